"""The C event-file reader (_scan.c) against the numpy path: the same records, the same
damaged record named with the same problem, the same plain scalars, on files that mix
every kind of record and are then damaged or cut at random; and the C functions refuse
arguments that would read outside their buffer."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard.eventfiles import CorruptRecord, RecordReader, accel, bulk, masked_crc32c
from safeboard.eventfiles.bulk import plain_scalars

SOURCE = Path(accel.__file__).with_name("_scan.c")


@pytest.fixture
def scan() -> Any:
    assert accel.SCAN is not None, "the C event-file reader is not built: python3 hatch_build.py"
    return accel.SCAN


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))  # fmt: skip


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def plain_event(tag: bytes, value: float, step: int, wall: float) -> bytes:
    """What tensorboardX's add_scalar writes (a step of 0 is left out: not plain)."""
    value_field = b"\x0a" + bytes([len(tag)]) + tag + b"\x15" + struct.pack("<f", value)
    summary = b"\x0a" + bytes([len(value_field)]) + value_field
    return (b"\x09" + struct.pack("<d", wall) + b"\x10" + varint(step)
            + b"\x2a" + bytes([len(summary)]) + summary)  # fmt: skip


def test_the_library_is_built_from_this_source(scan: Any) -> None:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    assert scan.source_digest == digest, (
        "the C event-file reader is older than _scan.c: rebuild it (python3 hatch_build.py)"
    )


def test_its_checksum_is_tensorboards(scan: Any) -> None:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as theirs

    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3, b"x" * 1001):
        assert scan.masked_crc32c(data) == theirs(data)


def test_arguments_that_reach_past_the_buffer_are_refused(scan: Any) -> None:
    data = frame(plain_event(b"loss", 0.5, 3, 1.0))
    starts, lengths = np.array([0], np.int64), np.array([len(data) - 16], np.int64)
    scan.plain(data, starts, lengths, 0, 1, 8)  # in bounds
    for bad_starts, bad_lengths in (
        ([1], [len(data) - 16]), ([0], [len(data)]), ([-1], [4]), ([0], [-1]),
        ([len(data)], [0]), ([2**62], [2**62]),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="past the buffer"):
            scan.plain(
                data, np.array(bad_starts, np.int64), np.array(bad_lengths, np.int64), 0, 1, 8
            )
    for first, stop, tags in ((0, 2, 8), (-1, 1, 8), (1, 0, 8), (0, 1, 0)):
        with pytest.raises(ValueError, match="out of range"):
            scan.plain(data, starts, lengths, first, stop, tags)
    with pytest.raises(ValueError, match="out of range"):
        scan.plain(data, starts, np.array([1, 2], np.int64), 0, 1, 8)
    with pytest.raises(ValueError, match="max_record"):
        scan.scan(data, 2**41)


record_kinds = st.one_of(
    st.tuples(
        st.just("plain"),
        st.sampled_from([b"loss", b"acc", b"lr/g0", b"x" * 118, b"\xff\xfe"]),
        st.floats(width=32, allow_nan=False),
        st.sampled_from([1, 127, 128, 16_384, 2**35, 2**62, 2**63 - 1]),
        st.floats(allow_nan=False),
    ),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
)


def _read(path: Path) -> tuple[list[tuple[int, bytes]], tuple[int, str] | None, bool, list[Any]]:
    reader = RecordReader(path)
    records: list[tuple[int, bytes]] = []
    scalars: list[Any] = []
    problem = None
    try:
        for block in reader.blocks(first=4096):
            records += [(block.offset(i), block.record(i)) for i in range(len(block))]
            plain = plain_scalars(block)
            scalars += [
                (block.offset(int(i)), plain.tags[int(t)], int(s), float(w), float(v))
                for i, t, s, w, v in zip(
                    plain.index, plain.tag_of, plain.steps, plain.times, plain.values, strict=True
                )
            ]
    except CorruptRecord as exc:
        problem = (exc.offset, exc.problem)
    return records, problem, reader.truncated, sorted(scalars)


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.lists(record_kinds, min_size=1, max_size=300),
    damage=st.one_of(
        st.none(),
        st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
        st.tuples(st.just("cut"), st.integers(0, 10**6)),
        st.tuples(st.just("length"), st.integers(0, 10**6), st.integers(2**30, 2**64 - 1)),
    ),
)
def test_the_c_reader_and_numpy_agree_on_any_file_damaged_anywhere(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[Any], damage: Any
) -> None:
    assert accel.SCAN is not None, "the C event-file reader is not built: python3 hatch_build.py"
    records = [plain_event(k[1], k[2], k[3], k[4]) if k[0] == "plain" else k[1] for k in kinds]
    data = bytearray(b"".join(frame(r) for r in records))
    if damage is not None and damage[0] == "flip":
        data[damage[1] % len(data)] ^= 1 << damage[2]
    elif damage is not None and damage[0] == "cut":
        del data[damage[1] % len(data) :]
    elif damage is not None:  # a record's length made absurd, its checksum made to match
        starts = np.cumsum([0] + [len(r) + 16 for r in records])[:-1]
        at = int(starts[damage[1] % len(records)])
        length = struct.pack("<Q", damage[2])
        data[at : at + 12] = length + struct.pack("<I", masked_crc32c(length))
    path = tmp_path_factory.mktemp("c-vs-numpy") / "events.out.tfevents.1.host"
    path.write_bytes(bytes(data))
    native = _read(path)
    scan, accel.SCAN = accel.SCAN, None
    try:
        numpy_path = _read(path)
    finally:
        accel.SCAN = scan
    assert native == numpy_path
    if damage is None:
        assert [r for _, r in native[0]] == records


def test_past_max_tags_the_records_of_new_tags_are_left_to_the_decoder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scan: Any
) -> None:
    tags = [f"tag{i}".encode() for i in range(10)]
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"".join(frame(plain_event(tags[i % 10], i, i + 1, 2.0)) for i in range(100)))
    monkeypatch.setattr(bulk, "MAX_TAGS", 3)
    (block,) = RecordReader(path).blocks()
    plain = plain_scalars(block)
    assert plain.tags == ["tag0", "tag1", "tag2"]
    assert plain.index.tolist() == [i for i in range(100) if i % 10 < 3]
    assert plain.found.tolist() == [i % 10 < 3 for i in range(100)]


@pytest.mark.parametrize("built", [True, False])
def test_the_import_command_says_at_once_when_the_c_reader_is_missing_and_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, built: bool
) -> None:
    from click.testing import CliRunner

    from safeboard.cli import cli

    if not built:
        monkeypatch.setattr(accel, "SCAN", None)
    else:
        assert accel.SCAN is not None, (
            "the C event-file reader is not built: python3 hatch_build.py"
        )
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / "events.out.tfevents.1.host").write_bytes(b"")
    for name in ("SAFEBOARD_URL", "SAFEBOARD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAFEBOARD_DATA_DIR", str(tmp_path / "no-server"))
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    result = CliRunner().invoke(cli, ["import", "tensorboard", str(logdir), "-p", "x"])
    assert result.exit_code == 1  # no server here: said after the reader's line
    said = result.stderr
    assert ("apt install gcc python3-dev" in said) is not built
    assert "no safeboard server configured" in str(result.exception)  # main() prints it


DEBUG_ALLOCATOR = """
import struct
from safeboard.eventfiles import accel, masked_crc32c
from safeboard.eventfiles.bulk import plain_scalars
from safeboard.eventfiles.records import Block, MAX_RECORD
import numpy as np

def frame(data):
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))

# 09 <wall> 10 <step 5> 2a <13> 0a <11> 0a <4> "loss" 15 <1.0f>
event = bytes.fromhex("09" + "00" * 8 + "1005" + "2a0d0a0b0a04" + "6c6f7373" + "150000803f")
data = frame(event) * 50_000  # columns grown many times over
starts, lengths, problem, at = accel.SCAN.scan(data, MAX_RECORD)
block = Block(data, 0, np.frombuffer(starts, np.int64), np.frombuffer(lengths, np.int64))
plain = plain_scalars(block)
print(len(block), problem, plain.index.size, plain.tags)
"""


def test_the_c_loops_keep_to_the_allocators_rules(scan: Any) -> None:
    """With Python's debug allocator, which stops the process when one of its allocators
    is called without the interpreter lock: the framing walk grows its columns with the
    lock released (it used PyMem_Realloc there: "Fatal Python error: _PyMem_DebugRealloc:
    Python memory allocator called without holding the GIL")."""
    env = {**os.environ, "PYTHONMALLOC": "debug"}
    done = subprocess.run(
        [sys.executable, "-c", DEBUG_ALLOCATOR], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["50000", "0", "50000", "['loss']"]


def test_plain_lets_other_threads_run_while_it_decodes(scan: Any) -> None:
    """``plain`` decodes without the interpreter lock: a thread beside it keeps running (the
    import's posting threads send while the next block is decoded, P7)."""
    record = frame(plain_event(b"loss", 0.5, 7, 1.7e9))
    count = 3_000_000  # about 0.1 s of decoding
    data = record * count
    starts = np.arange(count, dtype=np.int64) * len(record)
    lengths = np.full(count, len(record) - 16, dtype=np.int64)
    gaps: list[float] = []
    took: list[float] = []
    done = threading.Event()

    def decode() -> None:
        try:
            began = time.perf_counter()
            found = scan.plain(data, starts, lengths, 0, count, 8)[0]
            took.append(time.perf_counter() - began)
            assert np.frombuffer(found, dtype=bool).all()
        finally:
            done.set()

    worker = threading.Thread(target=decode)
    last = time.perf_counter()
    worker.start()
    while not done.is_set():  # this thread's longest wait for the lock
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    assert took, "the decoding failed"
    assert len(gaps) > 100, "the decoding ran without this thread"
    # Holding the lock, the whole call would be one wait; a busy machine's scheduling is not.
    assert max(gaps) < took[0] / 3, f"waited {max(gaps) * 1e3:.0f} of {took[0] * 1e3:.0f} ms"
