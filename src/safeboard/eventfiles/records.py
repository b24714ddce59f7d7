"""TFRecord framing, as TensorBoard's event files use it::

    uint64 length (little-endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

Both checksums are checked. A record that fails a check raises :class:`CorruptRecord`
naming the file and the offset; a record cut short at the end of the file (a file still
being written) is not an error: the reader stops before it and says where
(:attr:`RecordReader.offset`), so that a follower reads it once it is complete.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

__all__ = ["HEADER", "CorruptRecord", "Record", "RecordReader", "masked_crc32c"]

_HEADER = struct.Struct("<QI")
HEADER = _HEADER.size  # 12 bytes: length and its checksum
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A length past this is a damaged header, not a record (TensorBoard's own images are MBs).
MAX_RECORD = 1 << 30
_CHUNK = 16 << 20  # bytes read at a time


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = google_crc32c.value(data)
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


class RecordReader:
    """The checked records of one file from ``offset`` on. Iterating reads what is there
    now; iterate again later to read what was appended since (follow mode)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset  # the first byte not read yet (a record boundary)
        self.truncated = False  # the last pass ended inside a record (being written)

    def __iter__(self) -> Iterator[Record]:
        self.truncated = False
        with self.path.open("rb") as file:
            file.seek(self.offset)
            pending = b""
            while True:
                chunk = file.read(_CHUNK)
                buffer = pending + chunk if pending else chunk
                if not buffer:
                    return
                used = yield from self._records(buffer, self.offset)
                pending = buffer[used:]
                if not chunk:
                    self.truncated = bool(pending)
                    return

    def _records(self, buffer: bytes, base: int) -> Iterator[Record]:
        """The complete records at the start of ``buffer`` (file offset ``base``); returns
        how many bytes they took. Advances ``self.offset`` past each one yielded."""
        end = len(buffer)
        at = 0
        unpack = _HEADER.unpack_from
        crc_of = _CRC.unpack_from
        while at + HEADER <= end:
            length, length_crc = unpack(buffer, at)
            if masked_crc32c(buffer[at : at + 8]) != length_crc:
                raise CorruptRecord(self.path, base + at, "the length's checksum does not match")
            if length > MAX_RECORD:
                raise CorruptRecord(self.path, base + at, f"a length of {length} bytes")
            stop = at + HEADER + length
            if stop + 4 > end:
                break
            data = buffer[at + HEADER : stop]
            if masked_crc32c(data) != crc_of(buffer, stop)[0]:
                raise CorruptRecord(self.path, base + at, "the data's checksum does not match")
            self.offset = base + stop + 4
            yield Record(base + at, data)
            at = stop + 4
        return at
