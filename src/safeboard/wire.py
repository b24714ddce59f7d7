"""The binary columnar body of a metric batch, shared by the SDK (which packs it) and the
server (which reads it without making a Python object per point).

Layout, little-endian throughout::

    b"SBC1"                 magic and version
    uint32                  length of the header
    header                  UTF-8 JSON: {"batch_id": "...", "metrics": [["loss", 3], ...]}
                            padded with spaces so that the columns start 8-byte aligned
    per metric, in order:   int64 steps[n], float64 times[n], float64 values[n]

Nothing follows the last column. The JSON body (``application/json``) carries the same
batch for clients that cannot pack arrays; this one exists because parsing JSON numbers
into Python floats dominated the server's ingest time and memory (docs/benchmarks.md).

**The compact body** (``COMPACT_MEDIA_TYPE``, magic ``SBC2``): the same prefix and header,
each metric as ``[key, n, steps_bytes, values_bytes]``, then per metric ``float64
times[n]``, its steps column and its values column in the forms a stored chunk uses
(:func:`encode_steps`, :func:`encode_values`: plain, or steps of one stride as first step,
stride and count, values all exact in float32 as float32), zero bytes up to the next
multiple of 8. A TensorBoard import sends 12 bytes a point instead of 24: the server reads,
copies and joins half as much (its largest cost per request after the commit). A server
from before answers 415 to it; the client then sends plain bodies (client/columns.py).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH, metric_key_problem

__all__ = [
    "COMPACT_MEDIA_TYPE",
    "MAX_STEP",
    "MEDIA_TYPE",
    "Packed",
    "WireError",
    "columns",
    "compact_columns",
    "decode_steps",
    "decode_values",
    "encode_steps",
    "encode_values",
    "is_compact",
    "iter_columns",
    "metric_key_problem",
    "pack",
    "pack_arrays",
    "pack_compact",
    "pack_parts",
    "plain",
    "split",
]

MEDIA_TYPE = "application/vnd.safeboard.columns"
COMPACT_MEDIA_TYPE = "application/vnd.safeboard.columns.v2"
MAGIC = b"SBC1"
COMPACT_MAGIC = b"SBC2"
_PREFIX = struct.Struct("<4sI")
_STEP = np.dtype("<i8")
_FLOAT = np.dtype("<f8")
_SINGLE_FLOAT = np.dtype("<f4")
_STRIDED = b"\x01"  # + first step, stride, count: three int64
_SINGLE = b"\x02"  # + float32 values
_STRIDE = struct.Struct("<qqq")
_COMPACT_FROM = 16  # points: a shorter column gains a few bytes for the checks' 10 us
_POINT_BYTES = _STEP.itemsize + 2 * _FLOAT.itemsize
_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


MAX_KEY_LENGTH = MAX_METRIC_KEY_LENGTH  # the rules live in safeboard.vocabulary
MAX_STEP = 2**62
"""The largest step a batch may hold (steps run from 0): the server refuses a batch with
another (``metrics.batches.validate_batch``); the SDK drops such points and says so."""


class WireError(ValueError):
    """A body that does not follow the layout; the message says where."""


@dataclass(frozen=True)
class Packed:
    """A split body: the header's raw JSON and the column bytes after it."""

    header: bytes
    data: memoryview


def _floats(values: Sequence[float | str]) -> npt.NDArray[np.float64]:
    try:
        return np.asarray(values, dtype=_FLOAT)
    except ValueError:  # "NaN", "Infinity", "-Infinity" as the JSON form spells them
        return np.asarray([_SPECIAL[v] if isinstance(v, str) else v for v in values], _FLOAT)


Arrays = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]


def pack_arrays(batch_id: str, columns: Mapping[str, Arrays]) -> bytes:
    """The body for a batch given as arrays: per key its steps, times and values (what the
    SDK builds once from logged points, and spools as these bytes)."""
    return b"".join(pack_parts(batch_id, {key: [column] for key, column in columns.items()}))


def pack_parts(batch_id: str, columns: Mapping[str, Sequence[Arrays]]) -> list[Any]:
    """The body for a batch whose columns come in pieces (per key, its pieces' steps, times
    and values, in order), as the buffers that make it up, one after the other: the
    header, then the arrays themselves, not copied where they are already contiguous
    little-endian columns. The SDK's spool writes them so (one writev, without the
    interpreter lock); ``b"".join`` of them is the body."""
    parts: list[Any] = [b""]  # the header, once the counts are known
    keys = []
    for key, pieces in columns.items():  # all of a key's steps, then its times, its values
        steps = [_column(piece[0], _STEP) for piece in pieces]
        parts += steps
        parts += [_column(piece[1], _FLOAT) for piece in pieces]
        parts += [_column(piece[2], _FLOAT) for piece in pieces]
        keys.append([key, sum(int(a.size) for a in steps)])
    parts[0] = _header(MAGIC, batch_id, keys)
    return parts


def _column(array: npt.ArrayLike, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """``array`` as a contiguous little-endian column: itself when it is one already (the
    SDK's chunks: a check, no call into numpy)."""
    if type(array) is np.ndarray and array.dtype is dtype and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype)


def pack_compact(batch_id: str, columns: Mapping[str, Arrays]) -> bytes:
    """The compact body (``SBC2``, the module's docstring) for a batch given as arrays."""
    parts: list[Any] = [b""]
    keys = []
    for key, (steps, times, values) in columns.items():
        steps_blob = encode_steps(_column(steps, _STEP))
        values_blob = encode_values(_column(values, _FLOAT))
        times_column = _column(times, _FLOAT)
        parts += [times_column, steps_blob, values_blob]
        parts.append(b"\0" * (-(len(steps_blob) + len(values_blob)) % 8))
        keys.append([key, int(times_column.size), len(steps_blob), len(values_blob)])
    parts[0] = _header(COMPACT_MAGIC, batch_id, keys)
    return b"".join(parts)


def _header(magic: bytes, batch_id: str, keys: list[list[Any]]) -> bytes:
    header = json.dumps({"batch_id": batch_id, "metrics": keys}, separators=(",", ":")).encode()
    header += b" " * (-(_PREFIX.size + len(header)) % 8)
    return _PREFIX.pack(magic, len(header)) + header


def is_compact(body: bytes) -> bool:
    """Whether ``body`` is a compact one (``SBC2``)."""
    return body[:4] == COMPACT_MAGIC


def plain(body: bytes) -> bytes:
    """A compact body as the plain one (``SBC1``) of the same batch, for a server from
    before the compact body; WireError if it is not one."""
    if not is_compact(body):
        raise WireError("body: not SBC2")
    packed = split(body)
    header = json.loads(packed.header)
    metrics = header["metrics"]
    arrays = compact_columns(packed.data, [(int(n), int(s), int(v)) for _, n, s, v in metrics])
    return pack_arrays(header["batch_id"], {m[0]: a for m, a in zip(metrics, arrays, strict=True)})


def encode_steps(steps: npt.NDArray[np.int64]) -> bytes:
    """Steps as a column: first step, stride and count when they advance by one stride
    (16 points or more), else plain int64."""
    n = steps.size
    if n >= _COMPACT_FROM:
        first, stride = int(steps[0]), int(steps[1]) - int(steps[0])
        if (
            stride > 0
            and int(steps[-1]) - first == stride * (n - 1)
            and not (steps[1:] - steps[:-1] != stride).any()
        ):
            return _STRIDED + _STRIDE.pack(first, stride, n)
    return steps.tobytes()


def encode_values(values: npt.NDArray[np.float64]) -> bytes:
    """Values as a column: float32 when every one is exact in it (16 points or more), else
    plain float64."""
    if values.size >= _COMPACT_FROM:
        with np.errstate(over="ignore"):  # too large for float32: not exact, kept plain
            single = values.astype(_SINGLE_FLOAT)
        # Equal as numbers is equal bit for bit here (-0.0 stays -0.0 in float32); a NaN
        # is equal to nothing, so a column with one stays plain and keeps its payload.
        if (single == values).all():
            return _SINGLE + single.tobytes()
    return values.tobytes()


def decode_steps(blob: bytes | memoryview) -> npt.NDArray[np.int64]:
    """A steps column (:func:`encode_steps`) as int64; ValueError if in no known form."""
    if len(blob) % 8 == 0:
        return np.frombuffer(blob, dtype=_STEP)
    if blob[:1] == _STRIDED and len(blob) == 1 + _STRIDE.size:
        first, stride, n = _STRIDE.unpack_from(blob, 1)
        return np.arange(first, first + stride * n, stride, dtype=_STEP)
    raise ValueError(f"a steps column of {len(blob)} bytes is in no known form")


def decode_values(blob: bytes | memoryview) -> npt.NDArray[np.float64]:
    """A values column (:func:`encode_values`) as float64; ValueError if in no known form."""
    if len(blob) % 8 == 0:
        return np.frombuffer(blob, dtype=_FLOAT)
    if blob[:1] == _SINGLE and len(blob) % 4 == 1:
        return np.frombuffer(blob, dtype=_SINGLE_FLOAT, offset=1).astype(_FLOAT)
    raise ValueError(f"a values column of {len(blob)} bytes is in no known form")


def pack(batch_id: str, metrics: Mapping[str, Mapping[str, Sequence[float | str]]]) -> bytes:
    """The body for ``{"batch_id": ..., "metrics": {key: {"steps", "times", "values"}}}``
    (the JSON form of a batch, as the SDK spooled it before it spooled packed bodies)."""
    columns = {k: (c["steps"], c["times"], _floats(c["values"])) for k, c in metrics.items()}
    return pack_arrays(batch_id, columns)


def split(body: bytes, max_header: int = 1 << 20) -> Packed:
    """The header and the column bytes; the header is for the caller to validate."""
    if len(body) < _PREFIX.size:
        raise WireError("body: shorter than the 8-byte prefix")
    magic, length = _PREFIX.unpack_from(body)
    if magic not in (MAGIC, COMPACT_MAGIC):
        raise WireError("body: does not start with SBC1 or SBC2")
    if length > max_header or _PREFIX.size + length > len(body):
        raise WireError(f"body: header length {length} runs past the body")
    end = _PREFIX.size + length
    return Packed(body[_PREFIX.size : end], memoryview(body)[end:])


Column = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def iter_columns(data: memoryview, counts: Sequence[int]) -> Iterator[Column]:
    """Read-only views (no copy) of each metric's steps, times and values, made as they
    are asked for: a reader that refuses the 1,001st key has not made 100,000 views. The
    body's length is checked at once."""
    expected = sum(counts) * _POINT_BYTES
    if len(data) != expected:
        raise WireError(f"body: {len(data)} bytes of columns where the header needs {expected}")

    def views() -> Iterator[Column]:
        offset = 0
        for n in counts:
            steps = np.frombuffer(data, _STEP, n, offset)
            times = np.frombuffer(data, _FLOAT, n, offset + 8 * n)
            values = np.frombuffer(data, _FLOAT, n, offset + 16 * n)
            yield steps, times, values
            offset += _POINT_BYTES * n

    return views()


def columns(data: memoryview, counts: Sequence[int]) -> list[Column]:
    """Read-only views (no copy) of each metric's steps, times and values."""
    return list(iter_columns(data, counts))


def _wire_steps(blob: memoryview, n: int) -> npt.NDArray[np.int64]:
    """A compact body's steps column of ``n`` points (:func:`decode_steps`), its form
    checked first: a strided one has the header's count and its steps from 0 to MAX_STEP,
    so no header makes an array the body does not back."""
    if blob[:1] == _STRIDED and len(blob) == 1 + _STRIDE.size:
        first, stride, count = _STRIDE.unpack_from(blob, 1)
        if count != n or stride <= 0 or first < 0 or first + stride * (n - 1) > MAX_STEP:
            raise WireError(f"body: a strided steps column ({first}, {stride}, {count}) "
                            f"for {n} points")  # fmt: skip
    elif len(blob) != 8 * n:
        raise WireError(f"body: a steps column of {len(blob)} bytes for {n} points")
    return decode_steps(blob)


def _wire_values(blob: memoryview, n: int) -> npt.NDArray[np.float64]:
    """A compact body's values column of ``n`` points (:func:`decode_values`)."""
    if len(blob) != 8 * n and not (blob[:1] == _SINGLE and len(blob) == 1 + 4 * n):
        raise WireError(f"body: a values column of {len(blob)} bytes for {n} points")
    return decode_values(blob)


def compact_columns(data: memoryview, sizes: Sequence[tuple[int, int, int]]) -> list[Column]:
    """A compact body's columns (per metric: point count, steps and values bytes, as the
    header says): times as views, steps and values made from their forms. The body's
    length is checked first, so no column is made from a header the body does not back."""
    expected = sum(8 * n + s + v + (-(s + v) % 8) for n, s, v in sizes)
    if len(data) != expected:
        raise WireError(f"body: {len(data)} bytes of columns where the header needs {expected}")
    out = []
    offset = 0
    for n, s, v in sizes:
        times = np.frombuffer(data, _FLOAT, n, offset)
        offset += 8 * n
        steps = _wire_steps(data[offset : offset + s], n)
        values = _wire_values(data[offset + s : offset + s + v], n)
        offset += s + v + (-(s + v) % 8)
        out.append((steps, times, values))
    return out
