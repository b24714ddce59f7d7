"""safeboard.eventfiles: TFRecord framing with checked CRC32C (against TensorBoard's own
masked CRC), a corrupt length or data named with file and offset, a record cut short at
the end read once it is complete, and the Event fields decoded as TensorBoard's protos
write them. Every test runs with each reader: the C loops (_scan.c) and the numpy path
(used where the C reader was not built)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from safeboard.eventfiles import (
    CorruptRecord,
    RecordReader,
    Scalar,
    accel,
    decode_event,
    masked_crc32c,
)
from safeboard.eventfiles.wireformat import DecodeError


@pytest.fixture(params=["c", "numpy"], autouse=True)
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with the C reader (required: it is built at install) and with numpy."""
    if request.param == "c":
        assert accel.SCAN is not None, (
            "the C event-file reader is not built: install a C compiler and Python's "
            "headers, then `python3 hatch_build.py` (or reinstall)"
        )
    else:
        monkeypatch.setattr(accel, "SCAN", None)
    return str(request.param)


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))  # fmt: skip


def event(tag: str, value: float, step: int) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=12.5, step=step, summary=summary).SerializeToString()


def test_masked_crc32c_is_tensorboards() -> None:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as theirs

    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert masked_crc32c(data) == theirs(data)


def test_the_checksums_of_byte_rows_are_each_rows_own() -> None:
    import numpy as np

    from safeboard.eventfiles.bulk import crc32c_rows

    rng = np.random.default_rng(7)
    for length in (*range(12), 40, 41, 45, 128, 301):  # odd and even, the empty row too
        rows = rng.integers(0, 256, (257, length), dtype=np.uint8)
        rows[0] = 0xFF
        expected = [masked_crc32c(bytes(row)) for row in rows]
        assert crc32c_rows(rows).tolist() == expected
        view = rng.integers(0, 256, (257, length + 3), dtype=np.uint8)[:, 1 : length + 1]
        assert crc32c_rows(view).tolist() == [masked_crc32c(bytes(row)) for row in view]


def test_records_are_read_with_their_offsets_and_decoded(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    records = [event("loss", 0.5, 1), event("loss", 0.25, 2**40)]
    path.write_bytes(b"".join(frame(r) for r in records))
    reader = RecordReader(path)
    got = list(reader)
    assert [r.offset for r in got] == [0, 16 + len(records[0])]
    decoded = [decode_event(r.data, {}) for r in got]
    assert [(e.wall_time, e.step, e.items) for e in decoded] == [
        (12.5, 1, [Scalar("loss", 0.5)]), (12.5, 2**40, [Scalar("loss", 0.25)]),
    ]  # fmt: skip
    assert (reader.offset, reader.truncated) == (path.stat().st_size, False)


def test_a_record_cut_short_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.2.host"
    first, second = frame(event("a", 1.0, 0)), frame(event("a", 2.0, 1))
    for cut in (3, 12, len(second) - 1):  # in the header, at its end, in the data's CRC
        path.write_bytes(first + second[:cut])
        reader = RecordReader(path)
        assert len(list(reader)) == 1
        assert (reader.offset, reader.truncated) == (len(first), True)
        path.write_bytes(first + second)
        assert [r.offset for r in reader] == [len(first)]
        assert not reader.truncated


def test_a_reader_with_an_end_reads_nothing_at_or_past_it(tmp_path: Path) -> None:
    """A descriptor handed to the server is read up to its size on arrival
    (server/imports.py): a file that keeps growing cannot keep an import going."""
    import os
    from functools import partial

    path = tmp_path / "events.out.tfevents.3.host"
    records = [frame(event("a", float(i), i)) for i in range(1, 4)]  # one length
    path.write_bytes(b"".join(records))
    fd = os.open(path, os.O_RDONLY)
    try:
        for end, read in ((0, 0), (len(records[0]) + 5, 1), (len(records[0]) * 2, 2)):
            reader = RecordReader(path, opener=partial(os.fdopen, os.dup(fd), "rb"), end=end)
            assert len(list(reader)) == read
            assert reader.offset == len(records[0]) * read
            assert reader.truncated is (end % len(records[0]) != 0)
        whole = RecordReader(path, opener=partial(os.fdopen, os.dup(fd), "rb"), end=10**9)
        assert len(list(whole)) == 3  # an end past the file's: the file's end
    finally:
        os.close(fd)


@pytest.mark.parametrize(("at", "problem"), [(2, "the length's"), (14, "the data's")])
def test_a_corrupt_record_names_its_file_and_offset(tmp_path: Path, at: int, problem: str) -> None:
    path = tmp_path / "events.out.tfevents.3.host"
    first = frame(event("a", 1.0, 0))
    damaged = bytearray(frame(event("a", 2.0, 1)))
    damaged[at] ^= 0x40
    path.write_bytes(first + bytes(damaged))
    reader = RecordReader(path)
    with pytest.raises(CorruptRecord) as caught:
        list(reader)
    assert str(caught.value) == (
        f"{path}: corrupt record at byte offset {len(first)}: {problem} checksum does not match"
    )


def test_bytes_that_are_no_event_raise_decode_error() -> None:
    for junk in (b"\x0a\xff", b"\x0b", b"\x09\x00\x00"):
        with pytest.raises(DecodeError):
            decode_event(junk, {})


def test_blocks_and_plain_scalars_agree_with_the_record_by_record_decoder(tmp_path: Path) -> None:
    """The numpy path (framing leaps, column checksums, plain scalar decoding) gives what
    the one-record-at-a-time decoder gives, on a file mixing plain scalars of every step
    size and tag length with events it must leave to that decoder."""
    import random

    from tensorboard.compat.proto import event_pb2, summary_pb2

    from safeboard.eventfiles.bulk import plain_scalars

    rng = random.Random(15)  # noqa: S311  (a repeatable mix of records, not a secret)
    records = []
    plain_ones = set()  # what add_scalar writes (a step of 0 is left out of the bytes)
    for i in range(400):  # 40 tags of one length: more than the column compares take
        plain_ones.add(len(records))
        records.append(event(f"tag{i % 40:03d}", i * 1.5, 300 + i))
    for i in range(3000):  # three tags in turn: the framing walk leaps over these
        plain_ones.add(len(records))
        records.append(event(["loss", "acc", "lr/group0"][i % 3], i / 7, 1000 + i // 3))
    for i in range(6000):
        kind = rng.random()
        step = rng.choice([0, 1, 127, 128, 16_383, 16_384, 2**35, 2**62, i])
        if kind < 0.85:  # plain scalars, in runs of repeating tags (the leap's case)
            tag = ["loss", "acc", "lr/group0", "x" * rng.randint(1, 118)][i % 4 if i % 500 else 3]
            if step:
                plain_ones.add(len(records))
            records.append(event(tag, rng.uniform(-1e6, 1e6), step))
        elif kind < 0.9:
            records.append(event_pb2.Event(wall_time=1.0, step=-5).SerializeToString())
        elif kind < 0.95:  # two values in one event: not plain
            values = [summary_pb2.Summary.Value(tag=t, simple_value=1.5) for t in ("a", "b")]
            summary = summary_pb2.Summary(value=values)
            records.append(event_pb2.Event(step=step, summary=summary).SerializeToString())
        else:
            records.append(
                event_pb2.Event(wall_time=2.0, file_version="brain.Event:2").SerializeToString()
            )
    path = tmp_path / "events.out.tfevents.4.host"
    path.write_bytes(b"".join(frame(r) for r in records))
    blocks = list(RecordReader(path).blocks())
    got_records = [block.record(i) for block in blocks for i in range(len(block))]
    assert got_records == records
    assert len(blocks) == 1  # (one block: record i of the block is record i of the file)
    for block in blocks:
        plain = plain_scalars(block)
        decoded = [decode_event(block.record(i), {}) for i in range(len(block))]
        assert list(plain.index) == sorted(plain_ones)
        for j, i in enumerate(plain.index):
            item = decoded[i].items[0]
            assert isinstance(item, Scalar)
            assert plain.tags[plain.tag_of[j]] == item.tag
            assert (plain.steps[j], plain.values[j]) == (decoded[i].step, item.value)
            assert plain.times[j] == decoded[i].wall_time


@pytest.mark.parametrize("what", ["length", "data"])
def test_of_two_damaged_records_of_different_lengths_the_first_is_named(
    tmp_path: Path, what: str
) -> None:
    """The checksums are checked per distinct length: a damaged record of a rarer length
    before a damaged one of a common length is the one named, and the good records
    before it are read."""
    path = tmp_path / "events.out.tfevents.4.host"
    common = [frame(event("loss", i / 3, 10 + i)) for i in range(200)]
    rare = frame(event("a much longer tag than the others", 1.0, 5))
    records = [*common[:50], rare, *common[50:]]
    offsets = [sum(map(len, records[:i])) for i in range(len(records))]
    damaged = [bytearray(r) for r in records]
    at = 2 if what == "length" else 14
    damaged[50][at] ^= 0x01  # the rare one
    damaged[120][at] ^= 0x01  # a common one after it
    path.write_bytes(b"".join(damaged))
    reader = RecordReader(path)
    read = []
    with pytest.raises(CorruptRecord) as caught:
        read.extend(reader)
    assert caught.value.offset == offsets[50]
    assert [r.offset for r in read] == offsets[:50]


def test_records_longer_than_64_kib_among_small_ones(tmp_path: Path) -> None:
    """Lengths past what the reader counts (65,536) take the sorting path: the same
    records, in order, and a damaged long one is named."""
    from tensorboard.compat.proto import event_pb2

    path = tmp_path / "events.out.tfevents.5.host"
    long = event_pb2.Event(step=3, file_version="x" * 70_000).SerializeToString()
    records = [event("loss", 0.5, 1), long, event("loss", 0.25, 2), long]
    path.write_bytes(b"".join(frame(r) for r in records))
    assert [r.data for r in RecordReader(path)] == records
    damaged = bytearray(path.read_bytes())
    second = len(frame(records[0]))
    damaged[second + 12 + 40_000] ^= 0x10
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptRecord) as caught:
        list(RecordReader(path))
    assert caught.value.offset == second


@pytest.mark.parametrize("first", [1, 30, 200])
def test_blocks_cut_anywhere_give_every_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int
) -> None:
    """Blocks far smaller than the records: each block starts where the last complete
    record ended (a cut record read again whole), records longer than a block included,
    and a record cut short at the file's end is waited for."""
    from safeboard.eventfiles import records as module

    monkeypatch.setattr(module, "_CHUNK", 64)
    path = tmp_path / "events.out.tfevents.6.host"
    datas = [event(f"tag{i % 3}", i / 7, i) for i in range(40)]
    from tensorboard.compat.proto import event_pb2

    datas[20] = event_pb2.Event(step=3, file_version="v" * 700).SerializeToString()  # > 64 B x 10
    whole = b"".join(frame(d) for d in datas)
    path.write_bytes(whole[:-5])  # the last record cut short
    reader = RecordReader(path)
    got = [(block.offset(i), block.record(i)) for block in reader.blocks(first)
           for i in range(len(block))]  # fmt: skip
    assert [data for _, data in got] == datas[:-1]
    assert reader.truncated
    assert reader.offset == len(whole) - len(frame(datas[-1]))
    path.write_bytes(whole)
    assert [r.data for r in reader] == datas[-1:]
    assert not reader.truncated
