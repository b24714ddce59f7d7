"""Metric arrays: how chunks are encoded, decoded, merged and downsampled (numpy).

A stored chunk holds three columns. Each is plain little-endian 8-byte numbers (its length
a multiple of 8), or, when the points allow it without losing a bit, a compact form whose
first byte names it (its length never a multiple of 8, so no tag can be mistaken for
data; the forms live in ``safeboard.wire``, whose compact body carries them too): steps
that advance by one stride, as first step, stride and count (25 bytes); values that are
all exact in single precision, as float32 (1 + 4 bytes a point; TensorBoard's scalars and
a float32 tensor's ``.item()`` always are; a column holding a NaN stays plain, payload and
all). An import of TensorBoard scalars then writes 12 bytes a point instead of 24:
SQLite's commits, the ingest's largest cost, write half as much. Columns of fewer than 16
points stay plain (the checks would cost more than the bytes they save), and times always
do: wall-clock seconds as doubles do not fit in fewer bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safeboard.wire import decode_steps, decode_values, encode_steps, encode_values

__all__ = [
    "Buckets",
    "Series",
    "decode",
    "decode_steps",
    "decode_values",
    "decode_without_times",
    "downsample",
    "encode",
    "encode_steps",
    "encode_values",
    "from_wire",
    "json_float",
    "merge",
    "to_json_floats",
]

_STEP = np.dtype("<i8")
_FLOAT = np.dtype("<f8")
_NO_TIMES = np.empty(0, dtype=_FLOAT)
_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


@dataclass(frozen=True)
class Series:
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.steps.size)


def from_wire(
    steps: Sequence[int], times: Sequence[float], values: Sequence[float | str]
) -> Series:
    """Arrays from the JSON lists (values may hold "NaN", "Infinity", "-Infinity")."""
    floats = [_SPECIAL[v] if isinstance(v, str) else v for v in values]
    return Series(
        np.asarray(steps, dtype=_STEP),
        np.asarray(times, dtype=_FLOAT),
        np.asarray(floats, dtype=_FLOAT),
    )


def encode(series: Series) -> tuple[bytes, bytes, bytes]:
    """The stored columns of a chunk (compact where exact: the module's docstring)."""
    return (
        encode_steps(series.steps.astype(_STEP, copy=False)),
        series.times.astype(_FLOAT, copy=False).tobytes(),
        encode_values(np.ascontiguousarray(series.values, dtype=_FLOAT)),
    )


def decode(steps: bytes, times: bytes, values: bytes) -> Series:
    return Series(decode_steps(steps), np.frombuffer(times, dtype=_FLOAT), decode_values(values))


def decode_without_times(steps: bytes, values: bytes) -> Series:
    """For downsampling, which needs no wall times: the times array is left empty."""
    return Series(decode_steps(steps), _NO_TIMES, decode_values(values))


def merge(chunks: Iterable[Series], start: int | None = None, end: int | None = None) -> Series:
    """One series ordered by step (stable: points logged later win ties last), cut to
    ``start <= step <= end``."""
    parts = list(chunks)
    if not parts:
        empty = np.empty(0)
        return Series(empty.astype(_STEP), empty.astype(_FLOAT), empty.astype(_FLOAT))
    steps = np.concatenate([p.steps for p in parts])
    values = np.concatenate([p.values for p in parts])
    timed = all(p.times.size == p.steps.size for p in parts)
    times = np.concatenate([p.times for p in parts]) if timed else _NO_TIMES
    if steps.size > 1 and np.any(steps[1:] < steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        times = times[order] if timed else times
    if start is not None or end is not None:
        lo = int(np.searchsorted(steps, start, "left")) if start is not None else 0
        hi = int(np.searchsorted(steps, end, "right")) if end is not None else steps.size
        steps, values = steps[lo:hi], values[lo:hi]
        times = times[lo:hi] if timed else times
    return Series(steps, times, values)


@dataclass(frozen=True)
class Buckets:
    """Per bucket: first and last step, point count, min, max (NaN-ignoring) and the last
    value; together they draw an envelope that never hides a spike."""

    first_step: npt.NDArray[np.int64]
    last_step: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]


def downsample(series: Series, buckets: int) -> Buckets:
    """At most ``buckets`` buckets of equal step width over the series' step range (the
    server's histories use aligned power-of-two buckets instead: metrics/rollups.py)."""
    n = len(series)
    if n == 0:
        e = np.empty(0)
        return Buckets(e.astype(_STEP), e.astype(_STEP), e.astype(_STEP), e, e, e)
    steps, values = series.steps, series.values
    lo, hi = int(steps[0]), int(steps[-1])
    width = max(1, -(-(hi - lo + 1) // buckets))  # ceil: every step lands in a bucket
    ids = (steps - lo) // width
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], n] - 1
    with np.errstate(invalid="ignore"):
        mins = np.fmin.reduceat(values, starts)
        maxs = np.fmax.reduceat(values, starts)
    return Buckets(
        steps[starts], steps[ends], (ends - starts + 1).astype(_STEP), mins, maxs, values[ends]
    )


def json_float(value: float) -> float | str:
    """A float for JSON: NaN and infinities as the strings the ingest API accepts."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def to_json_floats(values: npt.NDArray[np.float64]) -> list[float | str]:
    """:func:`json_float` over an array (the finite common case stays vectorised)."""
    out: list[float | str] = values.tolist()
    if not np.all(np.isfinite(values)):
        for i in np.flatnonzero(~np.isfinite(values)):
            out[i] = json_float(float(values[i]))
    return out
