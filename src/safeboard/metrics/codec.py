"""Metric arrays: how chunks are encoded, decoded, merged and downsampled (numpy)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Buckets",
    "Series",
    "decode",
    "decode_without_times",
    "downsample",
    "downsample_chunks",
    "encode",
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
    return (
        series.steps.astype(_STEP, copy=False).tobytes(),
        series.times.astype(_FLOAT, copy=False).tobytes(),
        series.values.astype(_FLOAT, copy=False).tobytes(),
    )


def decode(steps: bytes, times: bytes, values: bytes) -> Series:
    return Series(
        np.frombuffer(steps, dtype=_STEP),
        np.frombuffer(times, dtype=_FLOAT),
        np.frombuffer(values, dtype=_FLOAT),
    )


def decode_without_times(steps: bytes, values: bytes) -> Series:
    """For downsampling, which needs no wall times: the times array is left empty."""
    return Series(np.frombuffer(steps, dtype=_STEP), _NO_TIMES, np.frombuffer(values, dtype=_FLOAT))


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
    """At most ``buckets`` buckets of equal step width over the series' step range."""
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


def _in_order(parts: Sequence[Series]) -> bool:
    """Each chunk sorted by step and none reaching back before the end of the one logged
    before it: their concatenation is already the merged series (the usual case)."""
    previous = None
    for part in parts:
        steps = part.steps
        if steps.size > 1 and np.any(steps[1:] < steps[:-1]):
            return False
        if previous is not None and steps.size and steps[0] < previous:
            return False
        if steps.size:
            previous = steps[-1]
    return True


def _cut(part: Series, start: int | None, end: int | None) -> Series:
    steps = part.steps
    lo = int(np.searchsorted(steps, start, "left")) if start is not None else 0
    hi = int(np.searchsorted(steps, end, "right")) if end is not None else steps.size
    return Series(steps[lo:hi], _NO_TIMES, part.values[lo:hi])


def _partial(part: Series, lo: int, width: int) -> tuple[npt.NDArray[np.int64], Buckets]:
    """One chunk's share of the buckets, and their ids; a bucket's bounds are found by
    binary search on the sorted steps, so only the values are reduced point by point."""
    steps, values = part.steps, part.values
    first_id, last_id = (int(steps[0]) - lo) // width, (int(steps[-1]) - lo) // width
    edges = lo + width * np.arange(first_id + 1, last_id + 1, dtype=_STEP)
    starts = np.r_[0, np.searchsorted(steps, edges, "left")]
    starts = starts[np.r_[True, starts[1:] != starts[:-1]] & (starts < steps.size)]
    ends = np.r_[starts[1:], steps.size] - 1
    with np.errstate(invalid="ignore"):
        mins = np.fmin.reduceat(values, starts)
        maxs = np.fmax.reduceat(values, starts)
    ids = (steps[starts] - lo) // width
    return ids, Buckets(
        steps[starts], steps[ends], (ends - starts + 1).astype(_STEP), mins, maxs, values[ends]
    )


def downsample_chunks(
    chunks: Sequence[Series], buckets: int, start: int | None = None, end: int | None = None
) -> Buckets:
    """``downsample(merge(chunks, start, end), buckets)`` without building the merged
    series when the chunks are already in step order: each chunk is reduced where it lies
    (numpy views of the stored bytes) and the buckets that span two chunks are joined.
    A 1,000,000-point history is then two reductions over its values (P2)."""
    if not _in_order(chunks):
        return downsample(merge(chunks, start, end), buckets)
    parts = [c for c in (_cut(c, start, end) for c in chunks) if c.steps.size]
    if not parts:
        return downsample(merge([]), buckets)
    lo, hi = int(parts[0].steps[0]), int(parts[-1].steps[-1])
    width = max(1, -(-(hi - lo + 1) // buckets))  # the same buckets as downsample()
    pieces = [_partial(part, lo, width) for part in parts]
    ids = np.concatenate([i for i, _ in pieces])
    bs = [b for _, b in pieces]
    first_step = np.concatenate([b.first_step for b in bs])
    last_step = np.concatenate([b.last_step for b in bs])
    last = np.concatenate([b.last for b in bs])
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size] - 1
    with np.errstate(invalid="ignore"):
        return Buckets(
            first_step[starts],
            last_step[ends],
            np.add.reduceat(np.concatenate([b.count for b in bs]), starts),
            np.fmin.reduceat(np.concatenate([b.min for b in bs]), starts),
            np.fmax.reduceat(np.concatenate([b.max for b in bs]), starts),
            last[ends],
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
