"""Histograms per step (issue 17): what makes one valid, how it is stored, and what the
dashboard's distribution view reads of it.

A histogram is ``n`` buckets: ``n + 1`` increasing finite edges and ``n`` counts (finite,
>= 0), as TensorBoard's ``HistogramProto`` gives them or as the SDK bins raw values
(``numpy.histogram``). Stored as two little-endian float64 arrays, about 1 KiB at 64
buckets. The distribution view draws percentiles over steps; a percentile is read from
the buckets by linear interpolation inside the bucket that holds it, so its error is at
most that bucket's width (documented in docs/sdk.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASIS_POINTS",
    "MAX_HISTOGRAM_BUCKETS",
    "decode",
    "encode",
    "histogram_problem",
    "percentiles",
    "thin_steps",
]

MAX_HISTOGRAM_BUCKETS = 1024
# TensorBoard's distribution bands: the median, +-0.5, 1, 1.5 sigma of a normal, and the
# extremes, in basis points of the total count.
BASIS_POINTS = (0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000)
_LE = np.dtype("<f8")


def histogram_problem(edges: Sequence[float], counts: Sequence[float]) -> str | None:
    """Why these edges and counts are not a histogram, or None."""
    if not 1 <= len(counts) <= MAX_HISTOGRAM_BUCKETS:
        return f"counts: 1 to {MAX_HISTOGRAM_BUCKETS} buckets"
    if len(edges) != len(counts) + 1:
        return "edges: one more than counts (each bucket between two edges)"
    # Plain floats, not numpy: a difference or a sum past the float range is inf here,
    # where numpy would warn (an error under strict warnings).
    e = [float(x) for x in edges]
    c = [float(x) for x in counts]
    if not all(math.isfinite(x) for x in e) or any(b <= a for a, b in itertools.pairwise(e)):
        return "edges: finite and strictly increasing"
    if not all(math.isfinite(x) and x >= 0 for x in c):
        return "counts: finite and at least 0"
    if not math.isfinite(sum(c)):
        return "counts: their sum is finite"
    return None


def encode(values: Sequence[float]) -> bytes:
    return np.asarray(values, dtype=_LE).tobytes()


def decode(data: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(data, dtype=_LE).astype(np.float64)


def percentiles(
    edges: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
) -> list[float] | None:
    """The values at ``BASIS_POINTS`` of the counts, or None for an empty histogram.
    Inside a bucket the counts are taken as spread evenly between its edges."""
    total = float(counts.sum())
    if total <= 0:
        return None
    cumulative = np.concatenate(([0.0], np.cumsum(counts)))
    out = []
    for bp in BASIS_POINTS:
        target = total * bp / 10000
        # The first edge whose cumulative count reaches the target.
        i = int(np.searchsorted(cumulative, target, side="left"))
        if i == 0:
            # Target 0: where the first non-empty bucket starts.
            first = int(np.argmax(counts > 0))
            out.append(float(edges[first]))
            continue
        i = min(i, len(edges) - 1)
        below, above = cumulative[i - 1], cumulative[i]
        share = (target - below) / (above - below) if above > below else 1.0
        # Weighted, not edges[i - 1] + share * width: a width may overflow (1e308 apart).
        out.append(float(edges[i - 1] * (1 - share) + edges[i] * share))
    return out


def thin_steps(steps: Sequence[int], most: int) -> list[int]:
    """At most ``most`` of ``steps`` (sorted), evenly spread, the first and last kept:
    the distribution over a long run is read from these."""
    if len(steps) <= most:
        return list(steps)
    if most == 1:
        return [steps[-1]]
    picks = np.linspace(0, len(steps) - 1, most).round().astype(np.int64)
    return [steps[int(i)] for i in np.unique(picks)]
