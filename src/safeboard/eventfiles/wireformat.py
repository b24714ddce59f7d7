"""The protobuf wire format, as far as event files need it: fields of a message as
(number, wire type, value) without a schema (no generated classes, no protobuf package)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["DecodeError", "Field", "fields", "packed_doubles", "packed_floats", "varint"]

Field = tuple[int, int, "int | bytes"]
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")


class DecodeError(ValueError):
    """Bytes that are not a protobuf message."""


def varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the offset after it."""
    value = shift = 0
    end = len(data)
    while True:
        if at >= end or shift > 63:
            raise DecodeError("a varint runs past its message")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> Iterator[Field]:
    """Each field of a message: numbers and fixed-width values as ints (raw bits), and
    length-delimited values as bytes. Groups (wire types 3 and 4) are refused."""
    at, end = 0, len(data)
    while at < end:
        key, at = varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = varint(data, at)
            yield number, kind, value
        elif kind == 1:
            if at + 8 > end:
                raise DecodeError("a 64-bit field runs past its message")
            yield number, kind, _FIXED64.unpack_from(data, at)[0]
            at += 8
        elif kind == 5:
            if at + 4 > end:
                raise DecodeError("a 32-bit field runs past its message")
            yield number, kind, _FIXED32.unpack_from(data, at)[0]
            at += 4
        elif kind == 2:
            length, at = varint(data, at)
            if at + length > end:
                raise DecodeError("a length-delimited field runs past its message")
            yield number, kind, bytes(data[at : at + length])
            at += length
        else:
            raise DecodeError(f"wire type {kind} (field {number})")


def packed_doubles(value: int | bytes) -> list[float]:
    if isinstance(value, int):  # one unpacked element (raw bits)
        return [struct.unpack("<d", _FIXED64.pack(value))[0]]
    if len(value) % 8:
        raise DecodeError("packed doubles of a length that is not a multiple of 8")
    return list(struct.unpack(f"<{len(value) // 8}d", value))


def packed_floats(value: int | bytes) -> list[float]:
    if isinstance(value, int):
        return [struct.unpack("<f", _FIXED32.pack(value))[0]]
    if len(value) % 4:
        raise DecodeError("packed floats of a length that is not a multiple of 4")
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def packed_varints(value: int | bytes) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, at = [], 0
    while at < len(value):
        number, at = varint(value, at)
        out.append(number)
    return out
