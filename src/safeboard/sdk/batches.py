"""The SDK's metric batches: logged points become packed arrays once (``safeboard.wire``),
and those bytes are what the sender posts, what the spool keeps and what the server stores.

No float is spelt as text on the way: NaN, infinities, -0.0, every step and every time
reach the server bit for bit. A spool written by an earlier SDK holds batches as JSON
(``{"batch_id", "metrics": {key: {"steps", "times", "values"}}}``, NaN spelt "NaN"):
:meth:`Batch.from_json` packs those when they are delivered.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from safeboard import wire
from safeboard.ids import new_id
from safeboard.sdk import notices

__all__ = ["MAX_BATCH_POINTS", "Batch", "Point", "to_batches"]

Point = tuple[int, float, Mapping[str, float]]
MAX_BATCH_POINTS = 100_000
_Column = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class Batch:
    """One batch: its id, the packed body (``wire.MEDIA_TYPE``) and its point count."""

    batch_id: str
    body: bytes
    points: int

    @classmethod
    def from_body(cls, body: bytes) -> Batch:
        """A packed body read back (from the spool); WireError or ValueError if it is not one."""
        header = json.loads(wire.split(body).header)
        points = sum(int(n) for _, n in header["metrics"])
        return cls(str(header["batch_id"]), body, points)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Batch:
        """A batch as the previous SDK spooled it (JSON, "NaN" and infinities spelt out)."""
        metrics = record["metrics"]
        body = wire.pack(record["batch_id"], metrics)
        return cls(record["batch_id"], body, sum(len(c["steps"]) for c in metrics.values()))


def _chunks(points: list[Point]) -> list[list[Point]]:
    """Groups of points holding at most MAX_BATCH_POINTS values together."""
    groups: list[list[Point]] = [[]]
    count = 0
    for point in points:
        if count and count + len(point[2]) > MAX_BATCH_POINTS:
            groups.append([])
            count = 0
        groups[-1].append(point)
        count += len(point[2])
    return [g for g in groups if g]


_refused: set[str] = set()


def _say_once(what: str, problem: str) -> None:
    if what not in _refused:
        _refused.add(what)
        notices.say(f"not logging {what}: {problem}")


def _loggable(key: str) -> bool:
    """Keys the server would refuse are dropped here (said once per key), so that one bad
    key does not cost the batch's other metrics."""
    problem = wire.metric_key_problem(key)
    if problem:
        _say_once(f"metric {key[:80]!r}", problem)
    return problem is None


def _step_ok(step: Any) -> bool:
    try:
        ok = bool(0 <= step <= wire.MAX_STEP)
    except TypeError:
        ok = False
    if not ok:
        _say_once(f"step {str(step)[:40]}", f"a step is a whole number from 0 to {wire.MAX_STEP}")
    return ok


def _steps(group: list[Point]) -> tuple[npt.NDArray[np.int64], list[Point]]:
    """The group's steps as an array, and the group; points whose step the server would
    refuse are dropped (said once per step)."""
    try:
        steps = np.array([p[0] for p in group], dtype=np.int64)
        if steps.size and int(steps.min()) >= 0 and int(steps.max()) <= wire.MAX_STEP:
            return steps, group
    except (OverflowError, TypeError, ValueError):
        pass
    group = [p for p in group if _step_ok(p[0])]
    return np.array([p[0] for p in group], dtype=np.int64), group


def _value(key: str, value: Any) -> float | None:
    """``value`` as a float, or None (said once per key) when it is not a number: that
    point alone is dropped, not the batch (packing would raise in the sender)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        _say_once(f"a value of metric {key[:80]!r}", f"{type(value).__name__} is not a number")
        return None


def _columns(group: list[Point]) -> dict[str, _Column]:
    steps, group = _steps(group)
    if not group:
        return {}
    first = group[0][2]
    if all(len(p[2]) == len(first) and p[2].keys() == first.keys() for p in group):
        # The usual case, every point logging the same keys: one array per column.
        times = np.array([p[1] for p in group], dtype=np.float64)
        try:
            return {
                k: (steps, times, np.array([float(p[2][k]) for p in group], dtype=np.float64))
                for k in first
            }
        except (TypeError, ValueError, OverflowError):
            pass  # a value that is not a number: point by point below
    lists: dict[str, tuple[list[int], list[float], list[float]]] = defaultdict(lambda: ([], [], []))
    for step, at, data in group:
        for key, value in data.items():
            number = _value(key, value)
            if number is None:
                continue
            column = lists[key]
            column[0].append(step)
            column[1].append(at)
            column[2].append(number)
    return {
        k: (np.array(s, dtype=np.int64), np.array(t, np.float64), np.array(v, np.float64))
        for k, (s, t, v) in lists.items()
    }


def to_batches(points: list[Point]) -> list[Batch]:
    """Packed batches of at most MAX_BATCH_POINTS values, each with a new id."""
    batches = []
    for group in _chunks(points):
        columns = {k: c for k, c in _columns(group).items() if _loggable(k)}
        if columns:
            batch_id = new_id()
            body = wire.pack_arrays(batch_id, columns)
            batches.append(Batch(batch_id, body, sum(c[0].size for c in columns.values())))
    return batches
