"""The SDK's metric batches: logged points become packed arrays once (``safeboard.wire``),
and those bytes are what the sender posts, what the spool keeps and what the server stores.

No float is spelt as text on the way: NaN, infinities, -0.0, every step and every time
reach the server bit for bit. A spool written by an earlier SDK holds batches as JSON
(``{"batch_id", "metrics": {key: {"steps", "times", "values"}}}``, NaN spelt "NaN"):
:meth:`Batch.from_json` packs those when they are delivered.
"""

from __future__ import annotations

import importlib
import json
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, repeat, starmap
from operator import methodcaller
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from safeboard import wire
from safeboard.ids import new_id
from safeboard.sdk import notices

__all__ = [
    "MAX_BATCH_POINTS", "SLICE_VALUES", "Batch", "Packer", "Point", "slices", "to_batches",
]  # fmt: skip

Point = tuple[int, float, Mapping[str, Any]]
MAX_BATCH_POINTS = 100_000
# Values converted in one step: each numpy call on them holds the interpreter well under
# a millisecond, so the training loop's log() never waits longer for it.
SLICE_VALUES = 4_096
MAX_KEY_SETS = 1_024  # sets of keys whose loggable ones the packer remembers
_values = methodcaller("values")
# The C packer's columns of a slice: keys, then steps, times and values (key-major) as bytes.
_Native = tuple[list[str], bytes, bytes, bytes]
_Column = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
# Keys logged together: their names, steps, times, and a (points x keys) table of values.
_Rows = tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass(frozen=True, eq=False)  # parts may be arrays: a batch is itself, not its bytes
class Batch:
    """One batch: its id, the packed body (``wire.MEDIA_TYPE``) as the buffers that make it
    up (``wire.pack_parts``: a sealed batch's header and its keys' runs of the packer's
    chunks, never copied into one body by the sender; the spool writes them as they are)
    and its point count. ``body`` joins them, for a request."""

    batch_id: str
    parts: tuple[Any, ...]
    points: int

    @property
    def body(self) -> bytes:
        if len(self.parts) == 1 and isinstance(self.parts[0], bytes):
            return self.parts[0]
        return b"".join(self.parts)

    @classmethod
    def from_body(cls, body: bytes) -> Batch:
        """A packed body read back (from the spool); WireError or ValueError if it is not one."""
        header = json.loads(wire.split(body).header)
        points = sum(int(metric[1]) for metric in header["metrics"])  # plain or compact
        return cls(str(header["batch_id"]), (body,), points)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Batch:
        """A batch as the previous SDK spooled it (JSON, "NaN" and infinities spelt out)."""
        metrics = record["metrics"]
        body = wire.pack(record["batch_id"], metrics)
        return cls(record["batch_id"], (body,), sum(len(c["steps"]) for c in metrics.values()))


_refused: set[str] = set()


def _say_once(what: str, problem: str) -> None:
    if what not in _refused:
        _refused.add(what)
        notices.say(f"not logging {what}: {problem}")


def _load_pack() -> ModuleType | None:
    try:
        return importlib.import_module("safeboard.sdk._pack")
    except ImportError:  # built without a C compiler (hatch_build.py said so)
        return None


PACK: ModuleType | None = _load_pack()
"""The C packer (``_pack.c``), or None: read at each call (a test sets it to None)."""


def _loggable(key: Any) -> bool:
    """Keys the server would refuse are dropped here (said once per key), so that one bad
    key does not cost the batch's other metrics."""
    if isinstance(key, str):
        problem = wire.metric_key_problem(key)
    else:  # log({1: 0.5}): packing it would raise in the sender
        problem = f"a metric's name is a str, not {type(key).__name__}"
    if problem:
        _say_once(f"metric {str(key)[:80]!r}", problem)
    return problem is None


def _step_ok(step: Any) -> bool:
    try:
        ok = bool(0 <= step <= wire.MAX_STEP)
    except TypeError:
        ok = False
    if not ok:
        _say_once(f"step {str(step)[:40]}", f"a step is a whole number from 0 to {wire.MAX_STEP}")
    return ok


def _steps(given: list[Any]) -> tuple[npt.NDArray[np.int64], list[int] | None]:
    """The steps as an array, and None; or, when the server would refuse some, the steps
    kept and their indexes (the others dropped, said once per step)."""
    try:
        steps = np.fromiter(given, np.int64, len(given))
        if steps.size and int(steps.min()) >= 0 and int(steps.max()) <= wire.MAX_STEP:
            return steps, None
    except (OverflowError, TypeError, ValueError):
        pass
    kept = [i for i, step in enumerate(given) if _step_ok(step)]
    return np.array([given[i] for i in kept], dtype=np.int64), kept


def _value(key: Any, value: Any) -> float | None:
    """``value`` as a float, or None (said once per key) when it is not a number: that
    point alone is dropped, not the batch (packing would raise in the sender)."""
    what = f"a value of metric {str(key)[:80]!r}"
    if value is None:  # numpy would make it a NaN
        _say_once(what, "None is not a number")
        return None
    try:
        return float(value)
    except OverflowError:
        _say_once(what, f"{type(value).__name__} too large for a float")
    except (TypeError, ValueError):
        _say_once(what, f"{type(value).__name__} is not a number")
    return None


def _table(datas: list[Mapping[str, Any]], width: int) -> npt.NDArray[np.float64] | None:
    """The values of points that log the same keys as one (points x keys) array, converted
    in C; None when one is not a number (then point by point)."""
    try:
        table = np.fromiter(
            chain.from_iterable(map(_values, datas)), np.float64, len(datas) * width
        )
    except (TypeError, ValueError, OverflowError):
        return None
    if np.isnan(table).any() and any(v is None for data in datas for v in data.values()):
        return None
    return table.reshape(len(datas), width)


def _columns(given: list[Any], times: list[Any], datas: list[Any]) -> list[_Rows]:
    """The points whose steps, times and values are ``given``, ``times`` and ``datas``, as
    groups of keys logged together: per group its keys, steps, times and a (points x keys)
    table of values. The usual case (every point logs the same keys) is one group, made
    in C: one pass over the keys, one over the values; otherwise each key is a group."""
    steps, kept = _steps(given)
    if kept is not None:
        given, times, datas = (
            [given[i] for i in kept],
            [times[i] for i in kept],
            [datas[i] for i in kept],
        )
    if not datas:
        return []
    keys = list(datas[0])
    if list(chain.from_iterable(datas)) == keys * len(datas):
        table = _table(datas, len(keys))
        if table is not None:
            return [(keys, steps, np.fromiter(times, np.float64, len(times)), table)]
    lists: dict[str, tuple[list[int], list[float], list[float]]] = defaultdict(lambda: ([], [], []))
    for step, moment, data in zip(given, times, datas, strict=True):
        for key, value in data.items():
            number = _value(key, value)
            if number is None:
                continue
            column = lists[key]
            column[0].append(step)
            column[1].append(moment)
            column[2].append(number)
    return [
        ([k], np.array(s, dtype=np.int64), np.array(t, np.float64),
         np.array(v, np.float64).reshape(-1, 1))
        for k, (s, t, v) in lists.items()
    ]  # fmt: skip


def _rows(native: _Native) -> _Rows:
    """The C packer's columns as _columns makes them: the values a (points x keys) view."""
    keys, steps, times, values = native
    table = np.frombuffer(values, np.float64).reshape(len(keys), -1).T
    return keys, np.frombuffer(steps, np.int64), np.frombuffer(times, np.float64), table


def slices(points: Iterable[Point]) -> Iterator[list[Point]]:
    """Groups of points holding about SLICE_VALUES values (a point with more, alone)."""
    group: list[Point] = []
    values = 0
    for point in points:
        group.append(point)
        values += len(point[2])
        if values >= SLICE_VALUES:
            yield group
            group, values = [], 0
    if group:
        yield group


class _Chunk:
    """Points of keys logged together: their steps and times once, and each key's values
    in a row of its own (so that a key's column is one contiguous run of a row)."""

    __slots__ = ("steps", "times", "used", "values")

    def __init__(self, size: int, width: int) -> None:
        self.steps = np.empty(size, np.int64)
        self.times = np.empty(size, np.float64)
        self.values = np.empty((width, size), np.float64)
        self.used = 0

    def column(self, row: int, start: int, end: int) -> _Column:
        return self.steps[start:end], self.times[start:end], self.values[row, start:end]


class _Group:
    """The open batch's points of one set of keys, copied into chunks of their own: the
    first of FIRST_CHUNK points, each next one twice the last, up to LAST_CHUNK. A chunk
    is never moved or copied again; sealing takes views. So a batch of 100,000 values of
    10 keys is about 200 buffers, not the 2,400 of one per slice that log() packed:
    sealing it and handing it to the spool's writer held the interpreter lock for 0.6 to
    2 ms, and the training loop waited that long (issue 13). Keys seldom logged hold small
    chunks, and the keys of a group share their steps and times, as the slices did."""

    __slots__ = ("_open", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self._open: _Chunk | None = None

    def add(self, steps: Any, times: Any, table: Any) -> list[tuple[_Chunk, int, int]]:
        """Copy the points in; where each run of them went (chunk, start, end)."""
        count = steps.size
        runs = []
        at = 0
        while at < count:
            chunk = self._open
            if chunk is None or chunk.used == chunk.steps.size:
                size = FIRST_CHUNK if chunk is None else min(LAST_CHUNK, 2 * chunk.steps.size)
                chunk = self._open = _Chunk(size, self.width)
            start = chunk.used
            take = min(chunk.steps.size - start, count - at)
            end = start + take
            chunk.steps[start:end] = steps[at : at + take]
            chunk.times[start:end] = times[at : at + take]
            chunk.values[:, start:end] = table[at : at + take].T
            chunk.used = end
            runs.append((chunk, start, end))
            at += take
        return runs


FIRST_CHUNK = 128  # points
LAST_CHUNK = 4_096
# A key's column in the open batch: runs of a row of chunks (chunk, row, start, end).
_Runs = list[list[Any]]


class Packer:
    """Points become packed batches a slice at a time (``add``), each of at most
    MAX_BATCH_POINTS values: no call holds the interpreter for long (the sender thread
    shares it with the training loop, P3)."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._columns: dict[str, _Runs] = {}
        self._values = 0
        self._full: list[tuple[dict[str, _Runs], int]] = []  # closed, not packed
        self._batches: list[Batch] = []
        self._keys: dict[tuple[str, ...], list[int]] = {}  # keys logged together: loggable

    def add(self, group: list[Point]) -> None:
        self.add_flat(list(chain.from_iterable(group)))

    def take(self, queue: deque[Any], points: int) -> None:
        """Pop the oldest ``points`` of ``queue`` (all its whole points, when it holds
        fewer), queued as run.log() queues them, and add them (``add_flat``). The C packer
        pops them and makes their columns in one call, about 3x faster than Python; its
        caller must be the queue's only consumer (the sender, under its lock)."""
        if PACK is None:
            count = 3 * min(points, len(queue) // 3)
            self.add_flat(list(starmap(queue.popleft, repeat((), count))))
        else:
            self.add_flat(*PACK.take(queue, points))

    def add_flat(self, flat: list[Any], native: _Native | None = None) -> None:
        """Points given as ``[step, time, values, step, time, values, ...]`` (how run.log()
        queues them), and their columns as the C packer made them, if it did. Never packs
        a batch: a full one is set aside as it is (``closed``), for ``sealed()`` to pack
        (run.log() calls this in a fast loop: sdk/sender.py)."""
        groups = []
        made = _columns(flat[0::3], flat[1::3], flat[2::3]) if native is None else [_rows(native)]
        for named, steps, times, table in made:
            loggable = self._loggable(named)
            if not loggable:  # no keys (an empty dict logged), or none the server takes
                continue
            if len(loggable) == len(named):
                groups.append((named, steps, times, table))
            else:
                groups.append(([named[i] for i in loggable], steps, times, table[:, loggable]))
        values = sum(steps.size * len(keys) for keys, steps, _, _ in groups)
        if self._values and self._values + values > MAX_BATCH_POINTS:
            self._close()
        for keys, steps, times, table in groups:
            group = self._groups.get(tuple(keys))
            if group is None:
                group = self._groups[tuple(keys)] = _Group(len(keys))
            for chunk, start, end in group.add(steps, times, table):
                for row, key in enumerate(keys):
                    runs = self._columns.setdefault(key, [])
                    last = runs[-1] if runs else None
                    # A chunk is one group's, where each key keeps its row and every add
                    # of the group follows the last: in the same chunk, the run goes on.
                    if last is not None and last[0] is chunk:
                        last[3] = end
                    else:
                        runs.append([chunk, row, start, end])
        self._values += values

    def _loggable(self, keys: list[str]) -> list[int]:
        """The indexes of the keys the server takes, found once for each set of keys."""
        named = tuple(keys)
        loggable = self._keys.get(named)
        if loggable is None:
            if len(self._keys) >= MAX_KEY_SETS:
                self._keys.clear()
            loggable = self._keys[named] = [i for i, key in enumerate(keys) if _loggable(key)]
        return loggable

    @property
    def closed(self) -> int:
        """Full batches set aside, not packed yet."""
        return len(self._full)

    def _close(self) -> None:
        if self._values:
            self._full.append((self._columns, self._values))
            self._groups, self._columns, self._values = {}, {}, 0

    def _pack_closed(self) -> None:
        """Seal the batches set aside: a header, and each key's chunks (``wire.pack_parts``).
        Joining them into one body copied every value while holding the interpreter lock,
        up to 1.6 ms for 100,000 values in one call, and the training loop waited that long
        (issue 13); the spool writes the parts as they are."""
        for runs, values in self._full:
            batch_id = new_id()
            columns = {
                key: [run[0].column(*run[1:]) for run in keyed] for key, keyed in runs.items()
            }
            parts = tuple(wire.pack_parts(batch_id, columns))
            self._batches.append(Batch(batch_id, parts, values))
        self._full = []

    def keep(self, batches: list[Batch]) -> None:
        """Take back full batches that could not be spooled: first in line again."""
        self._batches[:0] = batches

    def sealed(self) -> list[Batch]:
        """The batches that are full, packed (and forgotten here); the open one stays open."""
        self._pack_closed()
        done, self._batches = self._batches, []
        return done

    def batches(self) -> list[Batch]:
        """The batches packed so far, the last one sealed (and forgotten here)."""
        self._close()
        return self.sealed()


def to_batches(points: Iterable[Point]) -> list[Batch]:
    """Packed batches of at most MAX_BATCH_POINTS values, each with a new id."""
    packer = Packer()
    for group in slices(points):
        packer.add(group)
    return packer.batches()
