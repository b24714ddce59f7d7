"""Queries on ``task_log_batches``: an attempt's output in the batches its agent shipped.
Returns plain ``LogBatch`` objects. Writes run in the transaction that locked the task's
row (jobs/logs.py), so an attempt's batches are numbered and counted one at a time."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.jobs.models import TaskLogBatchRow

__all__ = ["LogBatch", "batches_after", "get_batch", "insert_batch", "last_batch",
           "task_bytes", "truncated"]  # fmt: skip

_b = cast(sa.Table, TaskLogBatchRow.__table__)


@dataclass(frozen=True)
class LogBatch:
    task_id: int
    attempt: int
    seq: int
    first_line: int  # the number of its first line in the attempt's output (from 1)
    lines: int  # lines kept in ``content``
    dropped: int  # lines past the task's cap, not kept
    bytes: int  # bytes of text kept
    content: str
    created_at: datetime

    @property
    def next_line(self) -> int:
        return self.first_line + self.lines + self.dropped


_FIELDS = [f.name for f in fields(LogBatch)]


def _batch(row: Any) -> LogBatch:
    values = row._mapping
    return LogBatch(**{name: values[name] for name in _FIELDS})


def _of(task_id: int, attempt: int) -> sa.ColumnElement[bool]:
    return sa.and_(_b.c.task_id == task_id, _b.c.attempt == attempt)


def get_batch(conn: Connection, task_id: int, attempt: int, seq: int) -> LogBatch | None:
    row = conn.execute(sa.select(_b).where(_of(task_id, attempt), _b.c.seq == seq)).first()
    return None if row is None else _batch(row)


def last_batch(conn: Connection, task_id: int, attempt: int) -> LogBatch | None:
    query = sa.select(_b).where(_of(task_id, attempt)).order_by(_b.c.seq.desc()).limit(1)
    row = conn.execute(query).first()
    return None if row is None else _batch(row)


def task_bytes(conn: Connection, task_id: int) -> int:
    """Bytes of text kept of the task, all attempts together."""
    query = sa.select(sa.func.coalesce(sa.func.sum(_b.c.bytes), 0)).where(_b.c.task_id == task_id)
    return int(conn.execute(query).scalar_one())


def insert_batch(conn: Connection, batch: LogBatch) -> None:
    conn.execute(sa.insert(_b).values(**{name: getattr(batch, name) for name in _FIELDS}))


def batches_after(
    conn: Connection, task_id: int, attempt: int, after: int, limit: int
) -> list[LogBatch]:
    query = (
        sa.select(_b).where(_of(task_id, attempt), _b.c.seq > after).order_by(_b.c.seq).limit(limit)
    )
    return [_batch(row) for row in conn.execute(query)]


def truncated(conn: Connection, task_id: int, attempt: int) -> bool:
    """Whether lines of this attempt were dropped (the task's cap was reached)."""
    query = sa.select(_b.c.seq).where(_of(task_id, attempt), _b.c.dropped > 0).limit(1)
    return conn.execute(query).first() is not None
