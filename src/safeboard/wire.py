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
    "MAX_STEP",
    "MEDIA_TYPE",
    "Packed",
    "WireError",
    "columns",
    "iter_columns",
    "metric_key_problem",
    "pack",
    "pack_arrays",
    "pack_parts",
    "split",
]

MEDIA_TYPE = "application/vnd.safeboard.columns"
MAGIC = b"SBC1"
_PREFIX = struct.Struct("<4sI")
_STEP = np.dtype("<i8")
_FLOAT = np.dtype("<f8")
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
    header = json.dumps({"batch_id": batch_id, "metrics": keys}, separators=(",", ":")).encode()
    header += b" " * (-(_PREFIX.size + len(header)) % 8)
    parts[0] = _PREFIX.pack(MAGIC, len(header)) + header
    return parts


def _column(array: npt.ArrayLike, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """``array`` as a contiguous little-endian column: itself when it is one already (the
    SDK's chunks: a check, no call into numpy)."""
    if type(array) is np.ndarray and array.dtype is dtype and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype)


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
    if magic != MAGIC:
        raise WireError("body: does not start with SBC1")
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
