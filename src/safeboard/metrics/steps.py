"""Histograms and text per step (issue 17): a batch stored exactly once (its id joins the
metric batches' in ``ingest_batches``, R1), and the reads of the run page.

Batches of histograms and texts are few and small next to metric batches (a training
loop logs one every hundred steps), so each is its own transaction: no group commit. A
stored batch is announced to the run's live streams (``media_event``: each key's last
step), recorded in its transaction as metric batches' events are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import InvalidRequest, NotFound
from safeboard.events import Event, EventBus, media_event
from safeboard.metrics import histograms as hist
from safeboard.metrics.access import RunGate
from safeboard.metrics.batches import BATCH_ID_PATTERN
from safeboard.metrics.models import HistogramRow, IngestBatchRow, StepTextRow
from safeboard.metrics.step_schemas import HistogramIn, StepBatch, TextIn
from safeboard.vocabulary import metric_key_problem
from safeboard.wire import MAX_STEP

__all__ = ["Distribution", "StepService", "StepStored"]

MAX_DISTRIBUTION_STEPS = 1000
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
_h = cast(sa.Table, HistogramRow.__table__)
_t = cast(sa.Table, StepTextRow.__table__)
_b = cast(sa.Table, IngestBatchRow.__table__)


@dataclass(frozen=True)
class StepStored:
    stored: int  # histograms and texts stored now (0: a batch stored before)
    duplicate: bool


@dataclass(frozen=True)
class Distribution:
    key: str
    total_steps: int
    steps: list[int]
    percentiles: list[list[float] | None]


def _check(batch: StepBatch) -> None:
    """Every rule beyond the shape, with the field it concerns."""
    if not _BATCH_ID.match(batch.batch_id):
        raise InvalidRequest("batch_id: 8 to 64 letters, digits, '-' or '_'")
    if not batch.histograms and not batch.texts:
        raise InvalidRequest("histograms, texts: at least one entry")
    entries: list[tuple[str, HistogramIn | TextIn]] = [
        *((f"histograms.{i}", h) for i, h in enumerate(batch.histograms)),
        *((f"texts.{i}", t) for i, t in enumerate(batch.texts)),
    ]
    for where, entry in entries:
        problem = metric_key_problem(entry.key)
        if problem is not None:
            raise InvalidRequest(f"{where}.key: {problem}")
        if not 0 <= entry.step <= MAX_STEP:
            raise InvalidRequest(f"{where}.step: from 0 to {MAX_STEP}")
        if isinstance(entry, HistogramIn):
            problem = hist.histogram_problem(entry.edges, entry.counts)
            if problem is not None:
                raise InvalidRequest(f"{where}.{problem}")
        elif "\x00" in entry.text:
            raise InvalidRequest(f"{where}.text: no NUL characters")


E = TypeVar("E", HistogramIn, TextIn)


def _last_of_each(entries: Sequence[E]) -> list[E]:
    """One entry per (key, step): the last one logged, as a later batch would replace it."""
    return list({(e.key, e.step): e for e in entries}.values())


def _last_steps(entries: Sequence[HistogramIn | TextIn]) -> dict[str, int]:
    last: dict[str, int] = {}
    for entry in entries:
        last[entry.key] = max(entry.step, last.get(entry.key, entry.step))
    return last


class StepService:
    def __init__(self, engine: Engine, clock: Clock = utcnow, *, runs: RunGate,
                 events: EventBus | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.clock = clock
        self._runs = runs
        self.events = events

    def ingest(self, principal: Principal, run_id: str, batch: StepBatch) -> StepStored:
        _check(batch)
        histograms = _last_of_each(batch.histograms)
        texts = _last_of_each(batch.texts)
        stored = len(histograms) + len(texts)
        event: Event | None = None
        try:
            with self.engine.begin() as conn:
                project_id = self._runs(conn, principal, run_id, Permission.PROJECTS_WRITE)
                seen = conn.execute(
                    sa.select(_b.c.batch_id).where(
                        _b.c.run_id == run_id, _b.c.batch_id == batch.batch_id
                    )
                ).first()
                if seen is not None:
                    return StepStored(0, duplicate=True)
                conn.execute(sa.insert(_b), [{
                    "run_id": run_id, "batch_id": batch.batch_id, "points": stored,
                    "received_at": self.clock(),
                }])  # fmt: skip
                self._replace(conn, _h, run_id, [_histogram_row(run_id, h) for h in histograms])
                self._replace(conn, _t, run_id, [_text_row(run_id, t) for t in texts])
                if self.events is not None:
                    made = media_event(project_id, run_id, histograms=_last_steps(histograms),
                                       texts=_last_steps(texts))  # fmt: skip
                    event = None if self.events.publish_at_commit(conn, made) else made
        except IntegrityError:  # the same batch, stored by a request racing this one
            return StepStored(0, duplicate=True)
        if self.events is not None and event is not None:
            self.events.publish(event)  # after the commit (SQLite: this process's streams)
        return StepStored(stored, duplicate=False)

    @staticmethod
    def _replace(
        conn: Connection, table: sa.Table, run_id: str, rows: list[dict[str, object]]
    ) -> None:
        if not rows:
            return
        by_key: dict[str, list[int]] = {}
        for row in rows:
            by_key.setdefault(str(row["key"]), []).append(int(str(row["step"])))
        for key, steps in by_key.items():
            conn.execute(
                sa.delete(table).where(
                    table.c.run_id == run_id, table.c.key == key, table.c.step.in_(steps)
                )
            )
        conn.execute(sa.insert(table), rows)

    def keys(self, principal: Principal, run_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """The run's histogram keys and text keys, each with its number of steps."""
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            found = []
            for table in (_h, _t):
                rows = conn.execute(
                    sa.select(table.c.key, sa.func.count())
                    .where(table.c.run_id == run_id)
                    .group_by(table.c.key)
                    .order_by(table.c.key)
                )
                found.append({str(k): int(n) for k, n in rows})
        return found[0], found[1]

    def distribution(self, principal: Principal, run_id: str, key: str, most: int) -> Distribution:
        """``key``'s percentiles at up to ``most`` steps spread over the run."""
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            where = (_h.c.run_id == run_id, _h.c.key == key)
            steps = list(conn.scalars(sa.select(_h.c.step).where(*where).order_by(_h.c.step)))
            picked = hist.thin_steps(steps, most)
            rows: list[Any] = []
            for start in range(0, len(picked), 500):  # bound the IN list
                part = picked[start : start + 500]
                rows += conn.execute(
                    sa.select(_h.c.step, _h.c.edges, _h.c.counts)
                    .where(*where, _h.c.step.in_(part))
                    .order_by(_h.c.step)
                ).all()
        values = [hist.percentiles(hist.decode(e), hist.decode(c)) for _, e, c in rows]
        return Distribution(key, len(steps), [int(r[0]) for r in rows], values)

    def histogram(
        self, principal: Principal, run_id: str, key: str, step: int | None
    ) -> tuple[int, float, list[float], list[float]]:
        """``key``'s histogram at ``step`` (or the last before it; the last with no step)."""
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            query = sa.select(_h.c.step, _h.c.time, _h.c.edges, _h.c.counts).where(
                _h.c.run_id == run_id, _h.c.key == key
            )
            if step is not None:
                query = query.where(_h.c.step <= step)
            row = conn.execute(query.order_by(_h.c.step.desc()).limit(1)).first()
        if row is None:
            raise NotFound("no histogram of that key at or before that step")
        edges, counts = hist.decode(row[2]), hist.decode(row[3])
        return int(row[0]), float(row[1]), edges.tolist(), counts.tolist()

    def texts(
        self, principal: Principal, run_id: str, key: str, start: int, limit: int
    ) -> tuple[list[tuple[int, float, str]], int | None]:
        """``key``'s texts from step ``start`` on, ``limit`` at most; the next page's start."""
        with self.engine.connect() as conn:
            self._runs(conn, principal, run_id, Permission.PROJECTS_READ)
            rows = conn.execute(
                sa.select(_t.c.step, _t.c.time, _t.c.text)
                .where(_t.c.run_id == run_id, _t.c.key == key, _t.c.step >= start)
                .order_by(_t.c.step)
                .limit(limit + 1)
            ).all()
        page = [(int(s), float(t), str(x)) for s, t, x in rows[:limit]]
        return page, (int(rows[limit][0]) if len(rows) > limit else None)


def _histogram_row(run_id: str, h: HistogramIn) -> dict[str, object]:
    return {
        "run_id": run_id, "key": h.key, "step": h.step, "time": h.time,
        "total": float(sum(h.counts)), "edges": hist.encode(h.edges),
        "counts": hist.encode(h.counts),
    }  # fmt: skip


def _text_row(run_id: str, t: TextIn) -> dict[str, object]:
    return {"run_id": run_id, "key": t.key, "step": t.step, "time": t.time, "text": t.text}
