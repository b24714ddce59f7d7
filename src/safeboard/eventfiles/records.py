"""TFRecord framing, as TensorBoard's event files use it::

    uint64 length (little-endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

Both checksums are checked, a block of records at a time (:class:`Block`: the length
checksums by distinct length, the data checksums as numpy columns, bulk.py). A record
that fails a check raises :class:`CorruptRecord` naming the file and the offset, after
the good records before it. A record cut short at the end of the file (a file still
being written) is not an error: the reader stops before it (:attr:`RecordReader.offset`,
:attr:`RecordReader.truncated`), and reads it once it is complete.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import google_crc32c
import numpy as np
import numpy.typing as npt

from safeboard.eventfiles import accel
from safeboard.eventfiles.bulk import crc32c_rows, distinct, gather

__all__ = ["HEADER", "Block", "CorruptRecord", "Record", "RecordReader", "masked_crc32c"]

HEADER = 12  # bytes: length and its checksum
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A length past this is a damaged header, not a record (TensorBoard's own images are MBs).
MAX_RECORD = 1 << 30
_CHUNK = 4 << 20  # bytes read at a time (the first batch leaves after the first block)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class CorruptRecord(Exception):
    """A record whose length or data fails its checksum (or whose length is absurd)."""

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        self.path, self.offset, self.problem = path, offset, problem
        super().__init__(f"{path}: corrupt record at byte offset {offset}: {problem}")


@dataclass(frozen=True)
class Record:
    offset: int  # where the record's header starts in its file
    data: bytes


@dataclass
class Block:
    """Checked records in a buffer read from a file: record ``i``'s header starts at
    ``starts[i]`` of ``data`` (file offset ``base + starts[i]``), its data is
    ``lengths[i]`` bytes long."""

    data: bytes
    base: int
    starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    _groups: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]] = field(
        default_factory=dict, repr=False
    )

    @property
    def array(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self.data, dtype=np.uint8)

    def __len__(self) -> int:
        return int(self.starts.size)

    def offset(self, i: int) -> int:
        return self.base + int(self.starts[i])

    def record(self, i: int) -> bytes:
        start = int(self.starts[i]) + HEADER
        return self.data[start : start + int(self.lengths[i])]

    def end(self) -> int:
        """The file offset after the last record."""
        if not len(self):
            return self.base
        return self.base + int(self.starts[-1] + HEADER + self.lengths[-1] + 4)

    def rows(self, length: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """The records of data length ``length`` (indexes), and their data and data
        checksum as an (n, length + 4) byte matrix (gathered once)."""
        if length not in self._groups:
            which = np.flatnonzero(self.lengths == length)
            self._groups[length] = (
                which,
                gather(self.array, self.starts[which] + HEADER, length + 4),
            )
        return self._groups[length]

    def first_bad_data(self) -> int | None:
        """The index of the first record whose data fails its checksum, or None."""
        bad: int | None = None
        for length in distinct(self.lengths):
            which, rows = self.rows(int(length))
            stored = np.ascontiguousarray(rows[:, -4:]).view("<u4")[:, 0]
            wrong = which[crc32c_rows(rows[:, :-4]) != stored]
            if wrong.size and (bad is None or int(wrong[0]) < bad):
                bad = int(wrong[0])
        return bad

    def head(self, n: int) -> Block:
        return Block(self.data, self.base, self.starts[:n], self.lengths[:n])


class RecordReader:
    """The checked records of one file from ``offset`` on. Reading (``blocks()`` or
    iterating) reads what is there now; read again later for what was appended since."""

    def __init__(
        self, path: Path, offset: int = 0,
        *, opener: Callable[[], BinaryIO] | None = None, end: int | None = None,
    ) -> None:  # fmt: skip
        self.path = path  # named in errors; opened unless ``opener`` is given
        self.offset = offset  # the first byte not read yet (a record boundary)
        self.truncated = False  # the last read ended inside a record (being written)
        # ``opener``: the file another way than by its path (a descriptor handed over,
        # safeboard/importsock); ``end``: no byte at or past it is read (a file that grows
        # while it is read is read as it was).
        self._open: Callable[[], BinaryIO] = opener or (lambda: path.open("rb"))
        self.end = end

    def __iter__(self) -> Iterator[Record]:
        for block in self.blocks():
            for i in range(len(block)):
                yield Record(block.offset(i), block.record(i))

    def blocks(self, first: int = _CHUNK) -> Iterator[Block]:
        """The records in blocks of about ``_CHUNK`` bytes; the first of about ``first``
        (a reader whose first batch ends sooner asks for less, and sends it sooner)."""
        self.truncated = False
        with self._open() as file:
            size = first
            while True:
                # Each block read whole from the file, from the first byte not read: a
                # record cut by the last block's end is read again from the page cache,
                # not copied in front of the next read.
                file.seek(self.offset)
                buffer = file.read(size if self.end is None else min(size, self.end - self.offset))
                if not buffer:
                    return
                block, problem = self._walk(buffer)
                if len(block):
                    self.offset = block.end()
                    yield block
                if problem is not None:
                    raise CorruptRecord(self.path, problem[0], problem[1])
                pending = len(buffer) - (block.end() - block.base)
                if len(buffer) < size:  # the end of the file
                    self.truncated = pending > 0
                    return
                size = _CHUNK + pending  # a record longer than a block: whole next time

    def _walk(self, buffer: bytes) -> tuple[Block, tuple[int, str] | None]:
        """The checked records at the start of ``buffer`` (file offset ``self.offset``),
        and the first problem: (file offset, what)."""
        if accel.SCAN is not None:
            return self._walk_native(buffer, accel.SCAN)
        base, end, at = self.offset, len(buffer), 0
        array = np.frombuffer(buffer, dtype=np.uint8)
        starts: list[int] = []
        leaps: list[npt.NDArray[np.int64]] = []  # found by _leap, in order, between starts
        lengths: list[int] = []
        unpack = _LENGTH.unpack_from
        problem: tuple[int, str] | None = None
        while at + HEADER <= end:
            (length,) = unpack(buffer, at)
            stop = at + HEADER + length + 4
            if stop > end or length > MAX_RECORD:
                if not self._length_ok(buffer, at):
                    problem = (base + at, "the length's checksum does not match")
                elif length > MAX_RECORD:
                    problem = (base + at, f"a length of {length} bytes")
                break
            starts.append(at)
            lengths.append(length)
            at = stop
            if len(lengths) % 16 == 0:
                found, at = _leap(array, at, end, lengths[-16:])
                if found.size:
                    leaps.append(np.array(starts, dtype=np.int64))
                    leaps.append(found)
                    starts, lengths = [], lengths[-16:]
        all_starts = np.concatenate([*leaps, np.array(starts, dtype=np.int64)])
        block = self._checked(buffer, all_starts)
        if len(block) < all_starts.size:
            bad = int(all_starts[len(block)])
            checked = self._length_ok(buffer, bad)
            what = (
                "the data's checksum does not match"
                if checked
                else "the length's checksum does not match"
            )
            problem = (base + bad, what)
        return block, problem

    def _walk_native(self, buffer: bytes, scan: ModuleType) -> tuple[Block, tuple[int, str] | None]:
        starts, lengths, problem, at = scan.scan(buffer, MAX_RECORD)
        block = Block(buffer, self.offset, np.frombuffer(starts, np.int64),
                      np.frombuffer(lengths, np.int64))  # fmt: skip
        if not problem:
            return block, None
        what = {
            1: "the length's checksum does not match",
            2: "the data's checksum does not match",
            3: f"a length of {_LENGTH.unpack_from(buffer, at)[0]} bytes",
        }[problem]
        return block, (self.offset + at, what)

    @staticmethod
    def _length_ok(buffer: bytes, at: int) -> bool:
        return masked_crc32c(buffer[at : at + 8]) == int(_CRC.unpack_from(buffer, at + 8)[0])

    def _checked(self, buffer: bytes, starts: npt.NDArray[np.int64]) -> Block:
        """The records up to the first that fails a checksum."""
        array = np.frombuffer(buffer, dtype=np.uint8)
        headers = gather(array, starts, HEADER)
        lengths = headers[:, :8].copy().view("<u8")[:, 0].astype(np.int64)
        stored = headers[:, 8:].copy().view("<u4")[:, 0]
        wrong = np.zeros(0, dtype=np.int64)
        for n in distinct(lengths):  # a few distinct lengths: one checksum each
            crc = masked_crc32c(int(n).to_bytes(8, "little"))
            bad = np.flatnonzero((lengths == n) & (stored != crc))
            if bad.size and (not wrong.size or bad[0] < wrong[0]):
                wrong = bad
        block = Block(buffer, self.offset, starts, lengths)
        good = int(wrong[0]) if wrong.size else len(block)
        block = block.head(good)
        bad_data = block.first_bad_data()
        return block.head(bad_data) if bad_data is not None else block


def _leap(
    array: npt.NDArray[np.uint8], at: int, end: int, recent: list[int]
) -> tuple[npt.NDArray[np.int64], int]:
    """Walk on in numpy while the records repeat the pattern of lengths of the last
    ``p`` records (``p`` up to 8: a few tags logged in turn): the lengths at the
    positions that pattern predicts are read at once, and the positions are accepted up
    to the first length that differs (each record's length places the next, so every one
    accepted is checked). The positions found and where the walk goes on."""
    for period in range(1, 9):
        pattern = recent[-period:]
        if recent[-2 * period : -period] != pattern:
            continue
        steps = np.array(pattern, dtype=np.int64) + HEADER + 4
        stride = int(steps.sum())
        cycles = min(8192 // period, (end - at) // stride)
        if cycles < 2:
            return np.zeros(0, dtype=np.int64), at
        within = np.concatenate(([0], np.cumsum(steps)[:-1]))
        positions = (at + np.arange(cycles)[:, None] * stride + within).reshape(-1)
        lengths = gather(array, positions, 8).view("<u8")[:, 0]
        differs = np.flatnonzero(lengths != np.tile(np.array(pattern, dtype=np.uint64), cycles))
        accepted = int(differs[0]) if differs.size else positions.size
        if accepted == 0:
            return np.zeros(0, dtype=np.int64), at
        found = positions[:accepted]
        last = accepted - 1
        return found, int(found[-1] + steps[last % period])
    return np.zeros(0, dtype=np.int64), at
