"""Metric use cases: ingest a batch exactly once, in a group commit with the batches that
arrive with it (P1, P9, R1), read a history raw or downsampled (P2)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import BadRequest, InvalidRequest, NotFound
from safeboard.events import Event, EventBus
from safeboard.metrics import repository as metrics
from safeboard.metrics import rollups
from safeboard.metrics.access import AccessRecheck, RunGate
from safeboard.metrics.batches import validate_batch
from safeboard.metrics.codec import Buckets, Series, downsample, merge
from safeboard.metrics.export import Export, plan
from safeboard.metrics.roller import Roller
from safeboard.metrics.schemas import MAX_STEP
from safeboard.metrics.writer import GroupWriter
from safeboard.vocabulary import MAX_HISTORY_KEYS, metric_key_problem

__all__ = ["ACCESS_FOR", "MAX_TAIL_POINTS", "IngestResult", "MetricService", "Tail"]

MAX_BUCKETS = 10_000
MAX_TAIL_POINTS = 5_000  # raw points per key in a live tail; more: the history again
ACCESS_FOR = 1.0  # seconds a run's write access is trusted without the database
_ACCESS_MAX = 10_000  # (principal, run) pairs remembered at once; past that, afresh


@dataclass(frozen=True)
class Tail:
    """A live chart's new points: every point after ``after_step`` (raw, no times)."""

    after_step: int
    series: Series


@dataclass
class _Pending:
    """A checked batch waiting for its group; ``project_id`` once its access is known."""

    principal: Principal
    run_id: str
    batch_id: str
    points: int
    received: datetime
    project_id: int | None  # remembered (checked before), or None: never checked
    fresh: bool  # checked less than ACCESS_FOR ago: trusted without the database
    chunks: list[dict[str, object]]  # rows, encoded before the write (repository.chunk_rows)
    summaries: list[dict[str, object]]
    last_step: dict[str, int]


class IngestCounts:
    """Batches and points stored since the server started, and batches acknowledged
    again (a retry of a stored one); safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches = self.points = self.duplicates = 0

    def add(self, points: int, *, duplicate: bool) -> None:
        with self._lock:
            if duplicate:
                self.duplicates += 1
            else:
                self.batches += 1
                self.points += points


class IngestResult:
    def __init__(self, stored: int, duplicate: bool) -> None:
        self.stored = stored
        self.duplicate = duplicate


class MetricService:
    def __init__(
        self,
        engine: Engine,
        events: EventBus | None = None,
        clock: Clock = utcnow,
        *,
        runs: RunGate,
        recheck: AccessRecheck | None = None,
    ) -> None:
        self.engine = engine
        self.events = events
        self.clock = clock
        self._runs = runs  # the runs domain's access walk (runs.access.run_project)
        self._recheck = recheck  # and its re-check in bulk (runs.access.still_allowed)
        self.rollups = Roller(engine)  # keeps downsampled reads short (metrics/rollups.py)
        self.ingested = IngestCounts()  # since the start, for GET /metrics (monitoring/)
        self.writer = GroupWriter(engine, bulk=self._store_all, committed=self._publish_group)
        self.monotonic = time.monotonic
        # (principal, run, permission) -> (project id, when checked): a run posting every
        # half second is checked once a second, not per batch. A removed grant or a
        # deleted run takes effect within ACCESS_FOR (a deleted run's batch fails at once:
        # its rows have no run to belong to).
        self._access: dict[tuple[Principal, str, Permission], tuple[int, float]] = {}

    def ingest(
        self,
        principal: Principal,
        run_id: str,
        batch_id: str,
        columns: Mapping[str, Series] | Iterable[tuple[str, Series]],
    ) -> IngestResult:
        """Store a batch, or acknowledge it without storing if its id was stored before.
        The batch goes in one transaction with whatever other batches are waiting
        (``GroupWriter``), in a savepoint of its own; the answer comes after that commit:
        acknowledged means durable. The batch is checked here, whatever body it came from
        (``validate_batch``)."""
        pairs = columns.items() if isinstance(columns, Mapping) else columns
        batch = validate_batch(batch_id, pairs)
        points = sum(len(series) for series in batch.values())
        received = self.clock()
        known = self._access.get((principal, run_id, Permission.PROJECTS_WRITE))
        fresh = known is not None and self.monotonic() - known[1] < ACCESS_FOR
        # Everything that needs no database is done here, outside the group's transaction.
        pending = _Pending(
            principal,
            run_id,
            batch_id,
            points,
            received,
            None if known is None else known[0],
            fresh,
            metrics.chunk_rows(run_id, batch),
            metrics.summary_rows(run_id, batch),
            {key: int(series.steps.max()) for key, series in batch.items()},
        )

        def store(conn: Connection) -> tuple[Event, bool] | None:
            return self._store_all(conn, [pending])[0]  # the fallback: this batch alone

        try:
            stored = self.writer.run(store, pending)
        except IntegrityError:
            # The run was deleted since its access was checked: no row may point at it.
            self._access.pop((principal, run_id, Permission.PROJECTS_WRITE), None)
            raise NotFound("no such run") from None
        if stored is None:
            self.ingested.add(0, duplicate=True)
            return IngestResult(0, duplicate=True)
        self.rollups.touch(run_id, batch)
        self.ingested.add(points, duplicate=False)
        return IngestResult(points, duplicate=False)

    def _store_all(
        self, conn: Connection, group: list[_Pending]
    ) -> list[tuple[Event, bool] | None]:
        """Store a group's batches in a few statements for them all (a batch stored before,
        or twice in the group: None, acknowledged only). Per batch: its event and whether
        that was published with the commit (PostgreSQL's NOTIFY)."""
        self._check_access(conn, group)
        claims = [(i.run_id, i.batch_id, i.points, i.received) for i in group]
        claimed = metrics.claim_batches(conn, claims)
        new = [item for item, first in zip(group, claimed, strict=True) if first]
        metrics.add_chunk_rows(conn, [row for item in new for row in item.chunks])
        metrics.update_summary_rows(conn, [row for item in new for row in item.summaries])
        events = {
            id(item): Event(
                "metrics", item.project_id or 0, item.run_id, {"last_step": item.last_step}
            )
            for item in new
        }
        # PostgreSQL: the live updates' NOTIFYs leave at the group's commit.
        sent = self.events is None or self.events.publish_all_at_commit(conn, list(events.values()))
        return [(events[id(item)], sent) if id(item) in events else None for item in group]

    def _publish_group(self, results: list[tuple[Event, bool] | None]) -> None:
        """After a group's commit, by the thread that wrote it: the live events that did not
        leave with the commit (SQLite's in-process bus), in the order of their ids. Each
        request publishing its own made a stream see a higher id before a lower one, and a
        stream that ended between the two skipped the lower one on resuming after the
        higher (``Last-Event-ID``)."""
        if self.events is None:
            return
        waiting = [event for event, sent in filter(None, results) if not sent]
        for event in sorted(waiting, key=lambda e: e.id):
            self.events.publish(event)

    def _check_access(self, conn: Connection, group: list[_Pending]) -> None:
        """Every batch's run access, on the write's connection (one connection a batch):
        those checked over ACCESS_FOR ago are re-checked together (``AccessRecheck``: one
        query for the group), the rest, and any that no longer passes, one by one (the
        run's walk, ``RunGate``, which raises what the request answers)."""
        permission = Permission.PROJECTS_WRITE
        checked_at = self.monotonic()
        stale = [i for i in group if i.project_id is not None and not i.fresh]
        if stale and self._recheck is not None:
            pairs = [(i.principal, i.project_id or 0, i.run_id) for i in stale]
            for item, holds in zip(stale, self._recheck(conn, pairs, permission), strict=True):
                if holds:
                    item.fresh = True
                    self._remember(
                        (item.principal, item.run_id, permission), item.project_id or 0, checked_at
                    )
        for item in group:
            if not item.fresh:
                item.project_id = self._runs(conn, item.principal, item.run_id, permission)
                item.fresh = True
                self._remember(
                    (item.principal, item.run_id, permission), item.project_id, checked_at
                )

    def _remember(
        self, key: tuple[Principal, str, Permission], project_id: int, checked_at: float
    ) -> None:
        if len(self._access) >= _ACCESS_MAX:
            self._access.clear()
        self._access[key] = (project_id, checked_at)

    def export(
        self, principal: Principal, run_id: str, key: str, start: int | None, end: int | None
    ) -> Export:
        """Every point of ``key`` between ``start`` and ``end``, checked and listed now,
        written as a stream by ``Export.json()`` (metrics/export.py)."""
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            spans = metrics.chunk_spans(conn, run_id, key, start, end)
        return Export(self.engine, run_id, key, plan(spans, start, end))

    def histories(
        self,
        principal: Principal,
        run_id: str,
        keys: Sequence[str],
        *,
        buckets: int,
        start: int | None = None,
        end: int | None = None,
        after: Sequence[int] | None = None,
    ) -> dict[str, Buckets | Tail]:
        """Per key (in the order asked, each once) its history downsampled to ``buckets``,
        all under one access walk on one connection. With ``after`` (one step per key, or
        one for all) a key's answer is its raw points after that step (a ``Tail``) while
        they number at most ``MAX_TAIL_POINTS``, else its whole history downsampled: what
        a live chart needs to extend itself."""
        steps = _after_steps(keys, after, start, end)
        keys = list(dict.fromkeys(keys))
        if not 1 <= buckets <= MAX_BUCKETS or math.isnan(buckets):
            raise InvalidRequest(f"buckets: 1 to {MAX_BUCKETS}")
        if not 1 <= len(keys) <= MAX_HISTORY_KEYS:
            raise BadRequest(
                f"metric: 1 to {MAX_HISTORY_KEYS} metric keys in one request ({len(keys)} asked);"
                " ask for more in several requests"
            )
        for key in keys:
            problem = metric_key_problem(key)
            if problem:
                raise BadRequest(f"metric: {problem}")
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            found = rollups.states(conn, run_id, keys)
            answers = {
                key: _history(
                    conn,
                    run_id,
                    found.get(key),
                    buckets=buckets,
                    start=start,
                    end=end,
                    after=None if steps is None else steps[key],
                )
                for key in keys
            }
        # Histories from before rollups existed, or a roller that fell behind.
        behind = [s.key for s in found.values() if rollups.behind(s, self.rollups.min_shift)]
        if behind:
            self.rollups.wanted(run_id, behind)
        return answers


def _history(
    conn: Connection,
    run_id: str,
    state: rollups.State | None,
    *,
    buckets: int,
    start: int | None,
    end: int | None,
    after: int | None,
) -> Buckets | Tail:
    if state is None:  # no point logged
        return Tail(after, merge([])) if after is not None else downsample(merge([]), buckets)
    if after is not None:
        chunks = metrics.load_chunks(
            conn, run_id, state.key, after + 1, None, with_times=False, span=state.chunk_span
        )
        tail = merge(chunks, after + 1, None)
        if len(tail) <= MAX_TAIL_POINTS:
            return Tail(after, tail)
        # Too much is new (a tab that slept): the whole history, downsampled.
    return rollups.downsampled(conn, state, run_id, buckets=buckets, start=start, end=end)


def _after_steps(
    keys: Sequence[str], after: Sequence[int] | None, start: int | None, end: int | None
) -> dict[str, int] | None:
    """The step after which each key's tail begins (the first one given for a key asked
    twice), or None for whole histories."""
    if not after:
        return None
    if start is not None or end is not None:
        raise BadRequest("after_step: a live tail has no start or end")
    if any(not 0 <= step <= MAX_STEP for step in after):
        raise BadRequest(f"after_step: from 0 to {MAX_STEP}")
    if len(after) == 1:
        return dict.fromkeys(keys, after[0])
    if len(after) != len(keys):
        raise BadRequest(
            f"after_step: one step for every key, in the same order, or one for all "
            f"({len(keys)} keys, {len(after)} steps)"
        )
    steps: dict[str, int] = {}
    for key, step in zip(keys, after, strict=True):
        steps.setdefault(key, step)
    return steps
