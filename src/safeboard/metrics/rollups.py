"""Rollups: multi-resolution summaries of a key's history, so that a downsampled read
touches about as many rows as it returns buckets, whatever the history's length (P10).

A rollup row summarises one aligned block of steps, ``block << level`` up to the next
block, with the count, first and last step, min, max (NaN-ignoring) and the last value
(the highest step's, the later logged on a tie) of the points in it. Levels are
``shift, shift + 1, ..., shift + 14``: a block is two blocks of the level below, so a read
takes one row per bucket. The key's ``shift`` is chosen at its first roll from the
history's density (about 16 points in a finest block, never under 2**8 steps), so sparse
steps are not summarised point by point.

Rollups hold exactly the points below the key's watermark, ``rolled_to`` rounded down to
a finest block. Ingest lowers ``rolled_to`` in its summary upsert when a batch reaches
below it (repository.update_summary); :func:`roll` moves it up, one slice at a time,
rewriting every row at or above the old watermark. Readers use only blocks wholly below
the watermark and take everything else from the raw points, so a read is exact whatever
the roller's progress.

A read's buckets are ``2**k`` steps wide and aligned to multiples of their width (the
smallest width giving at most the buckets asked over the range), so each bucket is an
exact union of rollup blocks, the range's edges and the unrolled tail coming from raw
chunks. Never commits.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite

from safeboard.metrics.codec import Buckets, Series, merge
from safeboard.metrics.models import MetricRollupRow, MetricSummaryRow
from safeboard.metrics.repository import load_chunks, next_step
from safeboard.storage import BINARY_RESULTS

__all__ = [
    "LEVELS",
    "MIN_SHIFT",
    "ROLL_AFTER_BLOCKS",
    "State",
    "behind",
    "choose_shift",
    "downsampled",
    "grid_shift",
    "roll",
    "states",
]

LEVELS = 15  # levels shift, shift + 1, ...: 2**14 finest blocks in the coarsest
STRIDE = 1  # every power of two: one row per bucket read, twice the finest level stored
MIN_SHIFT = 8  # the finest block: at least 256 steps
MAX_SHIFT = 62 - STRIDE * (LEVELS - 1)  # steps are below 2**62 (wire.MAX_STEP)
POINTS_PER_BLOCK = 16
ROLL_AFTER_BLOCKS = 64  # finest blocks past the watermark before a roll is worth its write
# About as many points read by one roll step, one write transaction: on SQLite it holds
# the write lock (about 0.1 s), so a backlog (an upgrade, a resumed run) is rolled in
# pieces that concurrent ingest waits little for.
SLICE_POINTS = 1 << 19

_r = cast(sa.Table, MetricRollupRow.__table__)
_s = cast(sa.Table, MetricSummaryRow.__table__)
_INT = np.dtype(np.int64)
_NO_TIMES = np.empty(0)


@dataclass(frozen=True)
class State:
    """What the key's summary says about its points and rollups."""

    key: str
    count: int
    first_step: int
    last_step: int
    rolled_to: int
    shift: int | None
    chunk_span: int


def states(
    conn: Connection, run_id: str, keys: list[str] | None = None, *, lock: bool = False
) -> dict[str, State]:
    """The summaries of ``keys`` (all the run's keys when None). ``lock``: held until the
    transaction ends (PostgreSQL FOR UPDATE; SQLite's writer holds the database)."""
    query = sa.select(
        _s.c.key,
        _s.c["count"],
        _s.c.first_step,
        _s.c.last_step,
        _s.c.rolled_to,
        _s.c.rollup_shift,
        _s.c.chunk_span,
    ).where(_s.c.run_id == run_id)
    if keys is not None:
        query = query.where(_s.c.key.in_(keys))
    if lock:
        query = query.with_for_update()
    return {row[0]: State(*row) for row in conn.execute(query)}


def choose_shift(
    count: int,
    first_step: int,
    last_step: int,
    min_shift: int = MIN_SHIFT,
    points_per_block: int = POINTS_PER_BLOCK,
) -> int:
    """The finest block's shift: about ``points_per_block`` points a block at this density."""
    steps_per_point = (last_step - first_step + 1) / max(count, 1)
    wanted = max(1, math.ceil(points_per_block * steps_per_point))
    return min(MAX_SHIFT, max(min_shift, (wanted - 1).bit_length()))


def behind(state: State, min_shift: int = MIN_SHIFT) -> bool:
    """Whether enough lies past the watermark for a roll to be worth its write."""
    shift = _shift_of(state, min_shift)
    unrolled = _floor(state.last_step + 1, shift) - _floor(state.rolled_to, shift)
    return unrolled >= ROLL_AFTER_BLOCKS << shift


def _shift_of(state: State, min_shift: int, points_per_block: int = POINTS_PER_BLOCK) -> int:
    if state.shift is not None:
        return state.shift
    return choose_shift(state.count, state.first_step, state.last_step, min_shift, points_per_block)


def _floor(step: int, shift: int) -> int:
    return (step >> shift) << shift


def _ceil(step: int, shift: int) -> int:
    return -((-step) >> shift) << shift


@dataclass(frozen=True)
class _Blocks:
    """Summaries of consecutive groups of points, ordered by step; ``index`` names the
    block (or bucket) each belongs to."""

    index: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    first: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    last_value: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.index.size)


def _empty() -> _Blocks:
    i, f = np.empty(0, dtype=_INT), np.empty(0)
    return _Blocks(i, i, i, i, f, f, f)


def _group(ids: npt.NDArray[np.int64], b: _Blocks) -> _Blocks:
    """Runs of equal ``ids`` (one per entry of ``b``) reduced to one entry each."""
    if ids.size == 0:
        return _empty()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size] - 1
    with np.errstate(invalid="ignore"):
        lo, hi = np.fmin.reduceat(b.min, starts), np.fmax.reduceat(b.max, starts)
    count = np.add.reduceat(b.count, starts)
    return _Blocks(ids[starts], count, b.first[starts], b.last[ends], lo, hi, b.last_value[ends])


def _of_points(series: Series, shift: int) -> _Blocks:
    """Points ordered by step (ties in logged order) into blocks of ``2**shift`` steps."""
    s, v = series.steps, series.values
    return _group(s >> shift, _Blocks(s, np.ones(s.size, dtype=_INT), s, s, v, v, v))


def _coarser(blocks: _Blocks, by: int) -> _Blocks:
    return _group(blocks.index >> by, blocks)


def _concat(parts: list[_Blocks]) -> _Blocks:
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    if len(parts) == 1:
        return parts[0]
    return _Blocks(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("index", "count", "first", "last", "min", "max", "last_value")
_COLUMNS = (
    _r.c.block,
    _r.c["count"],
    _r.c.first_step,
    _r.c.last_step,
    _r.c.min_value,
    _r.c.max_value,
    _r.c.last_value,
)


# One level's blocks in [low, high): built once, not per level of every roll step (the
# statement's construction cost more than its execution).
_KEPT = (
    sa.select(*_COLUMNS)
    .where(
        _r.c.run_id == sa.bindparam("run_id"),
        _r.c.key == sa.bindparam("key"),
        _r.c.level == sa.bindparam("level"),
        _r.c.block >= sa.bindparam("low"),
        _r.c.block < sa.bindparam("high"),
    )
    .order_by(_r.c.block)
)


def _of_rows(rows: Sequence[Sequence[Any]]) -> _Blocks:
    if not rows:
        return _empty()
    block, count, first, last, lo, hi, last_value = zip(*rows, strict=True)
    ints = [np.array(c, dtype=_INT) for c in (block, count, first, last)]
    # NULL (a NaN stored) reads back as NaN.
    floats = [np.array(c, dtype=np.float64) for c in (lo, hi, last_value)]
    return _Blocks(ints[0], ints[1], ints[2], ints[3], floats[0], floats[1], floats[2])


def _nan_to_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    listed: list[float | None] = values.tolist()
    if not np.isnan(values).any():  # the usual case: no value looked at in Python
        return listed
    return [None if v is not None and math.isnan(v) else v for v in listed]


_Row = tuple[str, str, int, int, int, int, int, float | None, float | None, float | None]
_ROW_COLUMNS = tuple(c.name for c in _r.columns)  # a _Row's order: the table's columns


def _rows(run_id: str, key: str, level: int, b: _Blocks) -> list[_Row]:
    columns = zip(
        b.index.tolist(),
        b.count.tolist(),
        b.first.tolist(),
        b.last.tolist(),
        _nan_to_none(b.last_value),
        _nan_to_none(b.min),
        _nan_to_none(b.max),
        strict=True,
    )
    return [(run_id, key, level, *row) for row in columns]


def _insert(conn: Connection, rows: list[_Row]) -> None:
    """SQLite: the rows as tuples through the driver's executemany. SQLAlchemy's
    processing of each row's parameters cost more than SQLite's insert of it (about 13
    against 7 us), and rolling 1M points writes about 8,000 rows, in the server beside
    ingest (P7). The values are ints, floats, None and strings: no bind processor is
    skipped. PostgreSQL: through SQLAlchemy, whose insertmanyvalues sends few statements."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_sqlite_insert(), rows)
    else:
        conn.execute(sa.insert(_r), [dict(zip(_ROW_COLUMNS, row, strict=True)) for row in rows])


@functools.cache
def _sqlite_insert() -> str:
    return str(sa.insert(_r).compile(dialect=sqlite.dialect()))


def roll(
    conn: Connection,
    run_id: str,
    key: str,
    *,
    min_shift: int = MIN_SHIFT,
    slice_points: int = SLICE_POINTS,
    points_per_block: int = POINTS_PER_BLOCK,
) -> bool:
    """Move the key's watermark up by one slice (about SLICE_POINTS points), in the
    caller's write transaction; True while more is left to roll. Every row at or above
    the old watermark is rewritten, so rows left there by a history that changed since
    (a batch at old steps) never count."""
    state = states(conn, run_id, [key], lock=True).get(key)
    if state is None:
        return False
    shift = _shift_of(state, min_shift, points_per_block)
    # Nothing lies below the first step (a new key's watermark is 0).
    start = _floor(max(state.rolled_to, state.first_step), shift)
    target = _floor(state.last_step + 1, shift)
    if target <= start:
        return False
    steps_per_point = (state.last_step - state.first_step + 1) / max(state.count, 1)
    span = max(1 << shift, _floor(int(slice_points * steps_per_point), shift))
    end = min(target, start + span)
    chunks = load_chunks(conn, run_id, key, start, end - 1, with_times=False, span=state.chunk_span)
    raw = merge(chunks, start, end - 1)
    if not len(raw) and end < target:  # a gap in the steps: on to the next point at once
        after = next_step(conn, run_id, key, end, state.chunk_span)
        end = target if after is None else min(target, max(end, _floor(after, shift)))
    levels = [shift + STRIDE * i for i in range(LEVELS)]
    mine = (_r.c.run_id == run_id) & (_r.c.key == key)
    conn.execute(
        sa.delete(_r).where(mine, _r.c.level == sa.bindparam("l"), _r.c.block >= sa.bindparam("b")),
        [{"l": level, "b": start >> level} for level in levels],
    )
    blocks = _of_points(raw, shift)
    rows = _rows(run_id, key, shift, blocks)
    for lower, level in itertools.pairwise(levels):
        # The lower level's blocks of this level's first block that lie below the old
        # watermark are still in the table, and still right.
        bounds = {"level": lower, "low": (start >> level) << STRIDE, "high": start >> lower}
        kept = conn.execute(_KEPT, {"run_id": run_id, "key": key, **bounds}).all()
        blocks = _coarser(_concat([_of_rows(kept), blocks]), STRIDE)
        rows += _rows(run_id, key, level, blocks)
    if rows:
        _insert(conn, rows)
    conn.execute(
        sa.update(_s)
        .where(_s.c.run_id == run_id, _s.c.key == key)
        .values(rolled_to=end, rollup_shift=shift)
    )
    return end < target


def grid_shift(lo: int, hi: int, buckets: int) -> int:
    """The smallest k whose aligned ``2**k``-step buckets cover [lo, hi] in <= buckets."""
    k = max(0, ((hi - lo + 1) // buckets).bit_length() - 1)
    while (hi >> k) - (lo >> k) + 1 > buckets:
        k += 1
    return k


def _cover(low: int, high: int, levels: list[int]) -> list[tuple[int, int, int]]:
    """[low, high) as aligned blocks, the coarsest possible: (level, first, end) ranges.
    ``low`` and ``high`` are multiples of the finest level's block."""
    if low >= high or not levels:
        return []
    level, finer = levels[-1], levels[:-1]
    a, b = _ceil(low, level), _floor(high, level)
    if a >= b:
        return _cover(low, high, finer)
    return [(level, a >> level, b >> level), *_cover(low, a, finer), *_cover(b, high, finer)]


def downsampled(
    conn: Connection,
    state: State,
    run_id: str,
    *,
    buckets: int,
    start: int | None,
    end: int | None,
) -> Buckets:
    """The key's points in [start, end] in at most ``buckets`` aligned buckets, exact:
    rollup blocks wholly below the watermark, raw points for the rest."""
    lo = state.first_step if start is None else max(start, state.first_step)
    hi = state.last_step if end is None else min(end, state.last_step)
    if lo > hi:
        return _buckets(_empty())
    k = grid_shift(lo, hi, buckets)
    raw_ranges, parts = [(lo, hi)], []
    if state.shift is not None and k >= state.shift:
        shift = state.shift
        low = _ceil(lo, shift)
        high = min(_floor(hi + 1, shift), _floor(state.rolled_to, shift))
        if low < high:
            levels = [shift + STRIDE * i for i in range(LEVELS) if shift + STRIDE * i <= k]
            parts.append(_read_blocks(conn, run_id, state.key, _cover(low, high, levels), k))
            raw_ranges = [(lo, low - 1), (high, hi)]
    for first, last in raw_ranges:
        if first <= last:
            chunks = load_chunks(
                conn, run_id, state.key, first, last, with_times=False, span=state.chunk_span
            )
            parts.append(_raw(chunks, first, last, k))
    every = _concat(parts)
    order = np.argsort(every.first, kind="stable")  # parts hold disjoint step ranges
    every = _Blocks(*(getattr(every, f)[order] for f in _FIELDS))
    return _buckets(_coarser(every, 0))


def _raw(chunks: list[Series], first: int, last: int, k: int) -> _Blocks:
    """Raw points in [first, last] by bucket. Chunks already in step order (the usual
    case) are reduced where they lie, numpy views of the stored bytes, and the buckets
    that span two chunks joined: a 10M-point history not yet rolled is two passes over
    its values instead of a merge."""
    if not _in_order(chunks):
        return _of_points(merge(chunks, first, last), k)
    parts = []
    for chunk in chunks:
        steps = chunk.steps
        lo, hi = np.searchsorted(steps, first, "left"), np.searchsorted(steps, last, "right")
        if lo < hi:
            parts.append(_of_points(Series(steps[lo:hi], _NO_TIMES, chunk.values[lo:hi]), k))
    return _coarser(_concat(parts), 0)


def _in_order(chunks: list[Series]) -> bool:
    """Each chunk sorted by step, none reaching back before the end of the one logged
    before it: their concatenation is the merged series."""
    previous = None
    for chunk in chunks:
        steps = chunk.steps
        if steps.size == 0:
            continue
        if (steps.size > 1 and np.any(steps[1:] < steps[:-1])) or (
            previous is not None and steps[0] < previous
        ):
            return False
        previous = steps[-1]
    return True


def _read_blocks(
    conn: Connection, run_id: str, key: str, ranges: list[tuple[int, int, int]], k: int
) -> _Blocks:
    """The rollup rows of ``ranges``, each named by the bucket (``2**k`` steps) it is in."""
    # One indexed range a branch: as an OR of ranges SQLite scanned all the key's rows.
    branches = [
        sa.select(*_COLUMNS).where(
            _r.c.run_id == run_id,
            _r.c.key == key,
            _r.c.level == level,
            _r.c.block >= first,
            _r.c.block < end,
        )
        for level, first, end in ranges
    ]
    query = branches[0] if len(branches) == 1 else sa.union_all(*branches)
    query = query.execution_options(**{BINARY_RESULTS: True})
    blocks = _of_rows(conn.execute(query).all())
    return _Blocks(blocks.first >> k, *(getattr(blocks, f) for f in _FIELDS[1:]))


def _buckets(b: _Blocks) -> Buckets:
    return Buckets(b.first, b.last, b.count, b.min, b.max, b.last_value)
