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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH, metric_key_problem

__all__ = [
    "MEDIA_TYPE",
    "Packed",
    "WireError",
    "columns",
    "metric_key_problem",
    "pack",
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


def pack(batch_id: str, metrics: Mapping[str, Mapping[str, Sequence[float | str]]]) -> bytes:
    """The body for ``{"batch_id": ..., "metrics": {key: {"steps", "times", "values"}}}``
    (the JSON form of a batch, as the SDK spools it)."""
    keys = [[key, len(column["steps"])] for key, column in metrics.items()]
    header = json.dumps({"batch_id": batch_id, "metrics": keys}, separators=(",", ":")).encode()
    header += b" " * (-(_PREFIX.size + len(header)) % 8)
    parts = [_PREFIX.pack(MAGIC, len(header)), header]
    for column in metrics.values():
        parts.append(np.asarray(column["steps"], dtype=_STEP).tobytes())
        parts.append(np.asarray(column["times"], dtype=_FLOAT).tobytes())
        parts.append(_floats(column["values"]).tobytes())
    return b"".join(parts)


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


def columns(
    data: memoryview, counts: Sequence[int]
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Read-only views (no copy) of each metric's steps, times and values."""
    expected = sum(counts) * _POINT_BYTES
    if len(data) != expected:
        raise WireError(f"body: {len(data)} bytes of columns where the header needs {expected}")
    out = []
    offset = 0
    for n in counts:
        steps = np.frombuffer(data, _STEP, n, offset)
        times = np.frombuffer(data, _FLOAT, n, offset + 8 * n)
        values = np.frombuffer(data, _FLOAT, n, offset + 16 * n)
        out.append((steps, times, values))
        offset += _POINT_BYTES * n
    return out
