"""Queries on metric chunks, summaries and stored batch ids. Never commits."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from safeboard.metrics.codec import Series, decode, decode_steps, decode_without_times, encode
from safeboard.metrics.models import IngestBatchRow, MetricChunkRow, MetricSummaryRow
from safeboard.storage import BINARY_RESULTS

__all__ = [
    "Spans",
    "Summary",
    "add_chunk",
    "add_chunk_rows",
    "add_chunks",
    "chunk_rows",
    "chunk_spans",
    "claim_batch",
    "claim_batches",
    "load_chunks",
    "load_span",
    "next_step",
    "summaries",
    "summary_rows",
    "update_summaries",
    "update_summary",
    "update_summary_rows",
]

_c = cast(sa.Table, MetricChunkRow.__table__)
_s = cast(sa.Table, MetricSummaryRow.__table__)
_b = cast(sa.Table, IngestBatchRow.__table__)
_CHUNK_INSERT = sa.insert(_c)


@dataclass(frozen=True)
class Summary:
    key: str
    count: int
    last_step: int
    last_time: float
    last_value: float  # NaN when the last value was NaN
    min: float | None  # over finite and infinite values; None if all were NaN
    max: float | None


def _insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ON CONFLICT."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# The ingest statements are built once per dialect, their values bound per execution:
# building and keying a statement cost more than running it on a small batch (P9).


@functools.cache
def _claim(dialect: str) -> sa.Executable:
    return _insert(dialect, _b).on_conflict_do_nothing().returning(_b.c.batch_id)


def claim_batch(conn: Connection, run_id: str, batch_id: str, points: int, now: datetime) -> bool:
    """Record a batch id; False if it was stored before (the retry is acknowledged only)."""
    row = {"run_id": run_id, "batch_id": batch_id, "points": points, "received_at": now}
    stored = conn.execute(_claim(conn.dialect.name), row).scalar()
    return stored is not None


def claim_batches(conn: Connection, claims: Sequence[tuple[str, str, int, datetime]]) -> list[bool]:
    """Record many (run, batch id, points, received) at once, in one statement: per claim,
    True if it is the batch's first (False: stored before, or claimed earlier in
    ``claims``, so stored once)."""
    first: dict[tuple[str, str], int] = {}
    rows = []
    for n, (run_id, batch_id, points, now) in enumerate(claims):
        if first.setdefault((run_id, batch_id), n) == n:
            rows.append({"run_id": run_id, "batch_id": batch_id, "points": points,
                         "received_at": now})  # fmt: skip
    stored = {(r[0], r[1]) for r in conn.execute(_claim_many(conn.dialect.name), rows)}
    return [
        first[(run_id, batch_id)] == n and (run_id, batch_id) in stored
        for n, (run_id, batch_id, _, _) in enumerate(claims)
    ]


@functools.cache
def _claim_many(dialect: str) -> sa.Executable:
    return _insert(dialect, _b).on_conflict_do_nothing().returning(_b.c.run_id, _b.c.batch_id)


def _chunk_row(run_id: str, key: str, series: Series) -> dict[str, object]:
    steps, times, values = encode(series)
    return {
        "run_id": run_id,
        "key": key,
        "first_step": int(series.steps.min()),
        "last_step": int(series.steps.max()),
        "count": len(series),
        "steps": steps,
        "times": times,
        "values": values,
    }


def add_chunks(conn: Connection, run_id: str, batch: Mapping[str, Series]) -> None:
    """A chunk per key, in one statement executed for every key (executemany)."""
    conn.execute(_CHUNK_INSERT, [_chunk_row(run_id, k, s) for k, s in batch.items()])


def chunk_rows(run_id: str, batch: Mapping[str, Series]) -> list[dict[str, object]]:
    """A batch's chunk rows, encoded (before the write: ``add_chunk_rows``)."""
    return [_chunk_row(run_id, k, s) for k, s in batch.items()]


def add_chunk_rows(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Chunk rows of any batches (``chunk_rows``), in one statement executed for them all."""
    if rows:
        conn.execute(_CHUNK_INSERT, rows)


def add_chunk(conn: Connection, run_id: str, key: str, series: Series) -> None:
    add_chunks(conn, run_id, {key: series})


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


_SMALL = 64  # points in a series below which plain Python beats numpy's per-call cost


def _summary_row(run_id: str, key: str, series: Series) -> dict[str, object]:
    """What a batch adds to a key's summary (the values of ``_summary_upsert``): its
    count, lowest step and span, the point at its highest step (the later one on a tie),
    and its lowest and highest values ignoring NaN (None when every value is NaN)."""
    n = len(series)
    if n <= _SMALL:
        # A sweep's batches hold a point or a few per key: numpy's reductions cost a few
        # microseconds each on those, which was 14% of a sweep's server time (P9).
        steps: list[int] = series.steps.tolist()
        values: list[float] = series.values.tolist()
        top = max(steps)
        last = n - 1 - steps[::-1].index(top)
        first = min(steps)
        seen = [v for v in values if not math.isnan(v)]
        lo, hi = (min(seen), max(seen)) if seen else (None, None)
        last_value = values[last]
        last_time = float(series.times[last])
    else:
        top_at = int(np.argmax(series.steps))
        last = int(np.flatnonzero(series.steps == series.steps[top_at])[-1])
        top, first = int(series.steps[last]), int(series.steps.min())
        with np.errstate(invalid="ignore"):
            lo = _finite_or_none(float(np.fmin.reduce(series.values)))
            hi = _finite_or_none(float(np.fmax.reduce(series.values)))
        last_value = float(series.values[last])
        last_time = float(series.times[last])
    return {
        "run_id": run_id,
        "key": key,
        "count": n,
        "first_step": first,
        "chunk_span": top - first,
        "last_step": top,
        "last_time": last_time,
        "last_value": _finite_or_none(last_value),
        "min_value": lo,
        "max_value": hi,
    }


@functools.cache
def _summary_upsert(dialect: str) -> sa.Executable:
    """The one statement that folds a batch into a key's summary (safe under concurrent
    batches), its values bound per key (``_summary_row``)."""
    insert = _insert(dialect, _s)
    new = insert.excluded
    newer = new.last_step >= _s.c.last_step
    return insert.on_conflict_do_update(
        index_elements=[_s.c.run_id, _s.c.key],
        set_={
            "count": _s.c["count"] + new["count"],
            "first_step": sa.case(
                (new.first_step < _s.c.first_step, new.first_step), else_=_s.c.first_step
            ),
            "chunk_span": sa.case(
                (new.chunk_span > _s.c.chunk_span, new.chunk_span), else_=_s.c.chunk_span
            ),
            # Rollups hold only steps below rolled_to: a batch reaching below it lowers it
            # (a resumed run logging old steps again), metrics/rollups.py.
            "rolled_to": sa.case(
                (new.first_step < _s.c.rolled_to, new.first_step), else_=_s.c.rolled_to
            ),
            "last_step": sa.case((newer, new.last_step), else_=_s.c.last_step),
            "last_time": sa.case((newer, new.last_time), else_=_s.c.last_time),
            "last_value": sa.case((newer, new.last_value), else_=_s.c.last_value),
            "min_value": sa.case(
                (_s.c.min_value.is_(None), new.min_value),
                (new.min_value < _s.c.min_value, new.min_value),
                else_=_s.c.min_value,
            ),
            "max_value": sa.case(
                (_s.c.max_value.is_(None), new.max_value),
                (new.max_value > _s.c.max_value, new.max_value),
                else_=_s.c.max_value,
            ),
        },
    )


def update_summaries(conn: Connection, run_id: str, batch: Mapping[str, Series]) -> None:
    """Fold a batch into its keys' summaries: one upsert executed for every key."""
    rows = [_summary_row(run_id, k, s) for k, s in batch.items()]
    conn.execute(_summary_upsert(conn.dialect.name), rows)


def summary_rows(run_id: str, batch: Mapping[str, Series]) -> list[dict[str, object]]:
    """What a batch adds to its keys' summaries (before the write: ``update_summary_rows``)."""
    return [_summary_row(run_id, k, s) for k, s in batch.items()]


def update_summary_rows(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Fold summary rows of any batches (``summary_rows``, in logged order) into their
    keys' summaries: one upsert executed for them all, and again only for a (run, key)
    that came twice (one upsert may not change a row twice; the second sees the first's
    result)."""
    rounds: list[list[dict[str, object]]] = []
    seen: dict[tuple[object, object], int] = {}
    for row in rows:
        name = (row["run_id"], row["key"])
        n = seen[name] = seen.get(name, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    for same in rounds:
        conn.execute(_summary_upsert(conn.dialect.name), same)


def update_summary(conn: Connection, run_id: str, key: str, series: Series) -> None:
    update_summaries(conn, run_id, {key: series})


def summaries(conn: Connection, run_id: str) -> list[Summary]:
    rows = conn.execute(sa.select(_s).where(_s.c.run_id == run_id).order_by(_s.c.key))
    return [
        Summary(
            key=r.key,
            count=r._mapping["count"],
            last_step=r.last_step,
            last_time=r.last_time,
            last_value=float("nan") if r.last_value is None else r.last_value,
            min=r.min_value,
            max=r.max_value,
        )
        for r in rows
    ]


def load_chunks(
    conn: Connection,
    run_id: str,
    key: str,
    start: int | None,
    end: int | None,
    *,
    with_times: bool = True,
    span: int | None = None,
) -> list[Series]:
    """The key's chunks overlapping [start, end]. Without times (downsampling does not use
    them) a third less is read and decoded. ``span``, the key's widest chunk (its
    summary's ``chunk_span``), bounds the index scan from below: without it, a read of a
    long history's last steps visits every chunk of the key before them."""
    times = _c.c.times if with_times else sa.literal(b"")
    query = sa.select(_c.c.id, _c.c.steps, times, _c.c["values"]).where(
        _c.c.run_id == run_id, _c.c.key == key
    )
    if start is not None:
        query = query.where(_c.c.last_step >= start)
        if span is not None:
            query = query.where(_c.c.first_step >= start - span)
    if end is not None:
        query = query.where(_c.c.first_step <= end)
    # In the index's own order: ORDER BY id alone made SQLite copy every blob through a
    # temporary sort tree (24 ms instead of 3 for 16 MB). Logged order, which decides ties
    # between chunks that share steps, is restored here on a handful of rows.
    query = query.order_by(_c.c.first_step, _c.c.id).execution_options(**{BINARY_RESULTS: True})
    rows = sorted(conn.execute(query), key=lambda r: r[0])
    if with_times:
        return [decode(s, t, v) for _, s, t, v in rows]
    return [decode_without_times(s, v) for _, s, _, v in rows]


def next_step(conn: Connection, run_id: str, key: str, at: int, span: int) -> int | None:
    """The key's smallest step at or after ``at``, or None: the first step of the chunks
    that start there or later, and the steps of the few that reach across it."""
    mine = (_c.c.run_id == run_id) & (_c.c.key == key)
    later = conn.execute(sa.select(sa.func.min(_c.c.first_step)).where(mine, _c.c.first_step >= at))
    found = later.scalar()
    across = conn.execute(
        sa.select(_c.c.steps)
        .where(mine, _c.c.first_step < at, _c.c.first_step >= at - span, _c.c.last_step >= at)
        .execution_options(**{BINARY_RESULTS: True})
    )
    for (blob,) in across:
        steps = decode_steps(blob)
        after = steps[steps >= at]
        if after.size and (found is None or int(after.min()) < found):
            found = int(after.min())
    return None if found is None else int(found)


@dataclass(frozen=True)
class Spans:
    """A key's chunks without their points, ordered by first step then id: ids, step
    bounds and point counts, one numpy array each (a history of a million small chunks
    stays a few tens of MB to plan an export with)."""

    ids: npt.NDArray[np.int64]
    first_step: npt.NDArray[np.int64]
    last_step: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]


def chunk_spans(
    conn: Connection, run_id: str, key: str, start: int | None, end: int | None
) -> Spans:
    """The key's chunks overlapping [start, end], without their points."""
    query = sa.select(_c.c.id, _c.c.first_step, _c.c.last_step, _c.c["count"]).where(
        _c.c.run_id == run_id, _c.c.key == key
    )
    if start is not None:
        query = query.where(_c.c.last_step >= start)
    if end is not None:
        query = query.where(_c.c.first_step <= end)
    result = conn.execute(query.order_by(_c.c.first_step, _c.c.id))
    parts = [np.array(rows, dtype=np.int64).reshape(-1, 4) for rows in result.partitions(50_000)]
    table = np.concatenate(parts) if parts else np.empty((0, 4), dtype=np.int64)
    return Spans(*(np.ascontiguousarray(table[:, i]) for i in range(4)))


def load_span(
    conn: Connection,
    run_id: str,
    key: str,
    *,
    ids: npt.NDArray[np.int64],
    first_steps: tuple[int, int],
    column: str,
    with_steps: bool,
) -> list[tuple[bytes, bytes]]:
    """(steps, column) of the chunks ``ids`` in logged (id) order, each found through the
    index by its first step (``first_steps``: the lowest and highest of theirs); steps
    are b"" unless ``with_steps``. Chunks stored after ``ids`` were listed are left out;
    a chunk deleted since is missing from the answer."""
    steps = _c.c.steps if with_steps else sa.literal(b"")
    lo, hi = first_steps
    query = sa.select(_c.c.id, steps, _c.c[column]).where(
        _c.c.run_id == run_id,
        _c.c.key == key,
        _c.c.first_step >= lo,
        _c.c.first_step <= hi,
        _c.c.id <= int(ids.max()),
    )
    wanted = set(ids.tolist())
    ordered = query.order_by(_c.c.first_step, _c.c.id).execution_options(**{BINARY_RESULTS: True})
    rows = [r for r in conn.execute(ordered) if r[0] in wanted]
    rows.sort(key=lambda r: r[0])
    return [(s, c) for _, s, c in rows]
