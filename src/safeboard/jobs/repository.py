"""Queries on tasks and their attempts. Returns plain ``Task`` and ``Attempt`` objects.

Every change to a task runs in a write transaction that first locks the task's row
(``get_task(lock=True)``: ``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write
lock taken at BEGIN IMMEDIATE), so a lease, a heartbeat, a report, a cancel and the
reaper never interleave on one task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.jobs.models import TaskAttemptRow, TaskRow, TaskTokenRow
from safeboard.vocabulary import TaskState

__all__ = [
    "LIVE_STATES",
    "Attempt",
    "Candidate",
    "Task",
    "TokenGrant",
    "attempts_of",
    "count_attempts",
    "expired_attempts",
    "get_attempt",
    "get_task",
    "held_gpus",
    "insert_attempt",
    "insert_task",
    "insert_token",
    "latest_attempts",
    "list_tasks",
    "live_attempts",
    "live_attempts_of",
    "lock_if_queued",
    "lock_task_if_free",
    "queued_candidates",
    "revoke_tokens",
    "task_of_run",
    "token_grant",
    "update_attempt",
    "update_task",
]

_t = cast(sa.Table, TaskRow.__table__)
_a = cast(sa.Table, TaskAttemptRow.__table__)
_k = cast(sa.Table, TaskTokenRow.__table__)

# An attempt in one of these holds its lease (and its GPUs) until it ends or is lost.
LIVE_STATES = (TaskState.LEASED, TaskState.STARTING, TaskState.RUNNING, TaskState.CANCELLING)


@dataclass(frozen=True)
class Task:
    id: int
    project_id: int
    run_id: str
    submitted_by: int | None
    command: list[str]
    env: dict[str, str]
    gpus: int
    labels: list[str]
    priority: int
    max_seconds: int | None
    max_lost_retries: int
    retry_on_failure: bool
    state: str
    attempt: int
    cancel_requested_by: str | None
    cancel_requested_at: datetime | None
    retry_of: int | None
    reason: str
    created_at: datetime
    finished_at: datetime | None
    code_sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # overrides for init(config=)


@dataclass(frozen=True)
class Attempt:
    task_id: int
    attempt: int
    agent_id: str
    gpu_uuids: list[str]
    state: str
    leased_at: datetime
    lease_expires_at: datetime
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class Candidate:
    """A queued task as the queue weighs it."""

    id: int
    gpus: int
    labels: list[str]


_TASK_FIELDS = [f.name for f in fields(Task)]
_ATTEMPT_FIELDS = [f.name for f in fields(Attempt)]


def _task(row: Any) -> Task:
    values = dict(row._mapping)
    values["command"] = list(values["command"] or [])
    values["env"] = dict(values["env"] or {})
    values["labels"] = list(values["labels"] or [])
    values["params"] = dict(values["params"] or {})
    values["retry_on_failure"] = bool(values["retry_on_failure"])
    return Task(**{name: values[name] for name in _TASK_FIELDS})


def _attempt(row: Any) -> Attempt:
    values = dict(row._mapping)
    values["gpu_uuids"] = list(values["gpu_uuids"] or [])
    return Attempt(**{name: values[name] for name in _ATTEMPT_FIELDS})


def insert_task(conn: Connection, **values: Any) -> int:
    return int(conn.execute(sa.insert(_t).values(**values).returning(_t.c.id)).scalar_one())


def get_task(conn: Connection, task_id: int, *, lock: bool = False) -> Task | None:
    query = sa.select(_t).where(_t.c.id == task_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _task(row)


def task_of_run(conn: Connection, run_id: str) -> Task | None:
    """The task whose run is ``run_id`` (one task per run), or None."""
    row = conn.execute(sa.select(_t).where(_t.c.run_id == run_id).limit(1)).first()
    return None if row is None else _task(row)


def lock_task_if_free(conn: Connection, task_id: int) -> Task | None:
    """The task, locked, unless another transaction holds it (PostgreSQL: SKIP LOCKED;
    the reaper of another replica is at it); None then, or when there is no such task."""
    query = sa.select(_t).where(_t.c.id == task_id).with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    return None if row is None else _task(row)


def update_task(conn: Connection, task_id: int, **values: Any) -> None:
    conn.execute(sa.update(_t).where(_t.c.id == task_id).values(**values))


def list_tasks(
    conn: Connection,
    project_ids: Sequence[int] | None,
    *,
    states: Sequence[str] = (),
    before: int | None = None,
    limit: int = 100,
) -> list[Task]:
    """Newest first; ``project_ids`` None: every project."""
    query = sa.select(_t).order_by(_t.c.id.desc()).limit(limit)
    if project_ids is not None:
        query = query.where(_t.c.project_id.in_(list(project_ids)))
    if states:
        query = query.where(_t.c.state.in_(list(states)))
    if before is not None:
        query = query.where(_t.c.id < before)
    return [_task(row) for row in conn.execute(query)]


def queued_candidates(
    conn: Connection, *, max_gpus: int, offset: int, limit: int
) -> list[Candidate]:
    """Queued tasks that need at most ``max_gpus`` GPUs, in the queue's order (highest
    priority, then oldest). Not locked: the claim locks the one it picks
    (``lock_if_queued``), so other claimers are not kept from the rest."""
    query = (
        sa.select(_t.c.id, _t.c.gpus, _t.c.labels)
        .where(_t.c.state == TaskState.QUEUED.value, _t.c.gpus <= max_gpus)
        .order_by(_t.c.priority.desc(), _t.c.id)
        .offset(offset)
        .limit(limit)
    )
    return [Candidate(r.id, r.gpus, list(r.labels or [])) for r in conn.execute(query)]


def lock_if_queued(conn: Connection, task_id: int) -> Task | None:
    """The task, locked, if it is still queued and no other claim holds it; else None.
    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` (a row another transaction is leasing is
    skipped, not waited for; one leased and committed since the candidates were read no
    longer matches ``state = 'queued'``). SQLite: the claim holds the write lock."""
    query = (
        sa.select(_t)
        .where(_t.c.id == task_id, _t.c.state == TaskState.QUEUED.value)
        .with_for_update(skip_locked=True)
    )
    row = conn.execute(query).first()
    return None if row is None else _task(row)


def insert_attempt(conn: Connection, attempt: Attempt) -> None:
    conn.execute(sa.insert(_a).values(**{name: getattr(attempt, name) for name in _ATTEMPT_FIELDS}))


def get_attempt(conn: Connection, task_id: int, attempt: int) -> Attempt | None:
    row = conn.execute(
        sa.select(_a).where(_a.c.task_id == task_id, _a.c.attempt == attempt)
    ).first()
    return None if row is None else _attempt(row)


def update_attempt(conn: Connection, task_id: int, attempt: int, **values: Any) -> None:
    conn.execute(
        sa.update(_a).where(_a.c.task_id == task_id, _a.c.attempt == attempt).values(**values)
    )


def attempts_of(conn: Connection, task_id: int) -> list[Attempt]:
    query = sa.select(_a).where(_a.c.task_id == task_id).order_by(_a.c.attempt)
    return [_attempt(row) for row in conn.execute(query)]


def latest_attempts(conn: Connection, tasks: Sequence[Task]) -> dict[int, Attempt]:
    """The current attempt of each task that was ever leased, by task id (one query)."""
    pairs = [(t.id, t.attempt) for t in tasks if t.attempt > 0]
    if not pairs:
        return {}
    query = sa.select(_a).where(sa.tuple_(_a.c.task_id, _a.c.attempt).in_(pairs))
    return {int(row.task_id): _attempt(row) for row in conn.execute(query)}


def count_attempts(conn: Connection, task_id: int, state: str) -> int:
    query = sa.select(sa.func.count()).where(_a.c.task_id == task_id, _a.c.state == state)
    return int(conn.execute(query).scalar_one())


def held_gpus(conn: Connection, agent_id: str) -> set[str]:
    """The GPUs this agent's live attempts hold: never leased twice, whatever it reports."""
    query = sa.select(_a.c.gpu_uuids).where(
        _a.c.agent_id == agent_id, _a.c.state.in_([s.value for s in LIVE_STATES])
    )
    return {str(uuid) for (uuids,) in conn.execute(query) for uuid in uuids or []}


def live_attempts(conn: Connection) -> list[tuple[Attempt, int, str]]:
    """Every live attempt with its task's project id and run id, by task id."""
    query = (
        sa.select(_a, _t.c.run_id, _t.c.project_id)
        .join(_t, _t.c.id == _a.c.task_id)
        .where(_a.c.state.in_([s.value for s in LIVE_STATES]))
        .order_by(_a.c.task_id)
    )
    return [(_attempt(row), row.project_id, row.run_id) for row in conn.execute(query)]


def live_attempts_of(conn: Connection, agent_id: str) -> list[tuple[int, int]]:
    """(task id, attempt) of this agent's live attempts."""
    query = (
        sa.select(_a.c.task_id, _a.c.attempt)
        .where(_a.c.agent_id == agent_id, _a.c.state.in_([s.value for s in LIVE_STATES]))
        .order_by(_a.c.task_id)
    )
    return [(int(task_id), int(number)) for task_id, number in conn.execute(query)]


def expired_attempts(conn: Connection, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(task id, attempt) of live attempts whose lease lapsed before ``now``."""
    query = (
        sa.select(_a.c.task_id, _a.c.attempt)
        .where(_a.c.state.in_([s.value for s in LIVE_STATES]), _a.c.lease_expires_at < now)
        .order_by(_a.c.lease_expires_at)
        .limit(limit)
    )
    return [(int(r.task_id), int(r.attempt)) for r in conn.execute(query)]


# Task tokens (S14)


@dataclass(frozen=True)
class TokenGrant:
    """A task token's row with what decides whether it still stands: its task's current
    attempt and run, and the state of the attempt it was issued to."""

    id: str
    secret_hash: str = field(repr=False)
    task_id: int
    attempt: int
    run_id: str
    project_id: int
    expires_at: datetime
    revoked_at: datetime | None
    current_attempt: int
    task_run_id: str
    submitted_by: int | None
    attempt_state: str | None


def insert_token(conn: Connection, **values: Any) -> None:
    conn.execute(sa.insert(_k).values(**values))


def token_grant(conn: Connection, token_id: str) -> TokenGrant | None:
    """One query: the token, its task and the attempt it names."""
    query = (
        sa.select(
            _k.c.id,
            _k.c.secret_hash,
            _k.c.task_id,
            _k.c.attempt,
            _k.c.run_id,
            _k.c.project_id,
            _k.c.expires_at,
            _k.c.revoked_at,
            _t.c.attempt.label("current_attempt"),
            _t.c.run_id.label("task_run_id"),
            _t.c.submitted_by,
            _a.c.state.label("attempt_state"),
        )
        .join(_t, _t.c.id == _k.c.task_id)
        .outerjoin(_a, sa.and_(_a.c.task_id == _k.c.task_id, _a.c.attempt == _k.c.attempt))
        .where(_k.c.id == token_id)
    )
    row = conn.execute(query).first()
    return None if row is None else TokenGrant(**dict(row._mapping))


def revoke_tokens(
    conn: Connection, task_id: int, now: datetime, *, attempt: int | None = None
) -> None:
    """Revoke the task's live tokens (of one attempt, or of all)."""
    query = sa.update(_k).where(_k.c.task_id == task_id, _k.c.revoked_at.is_(None))
    if attempt is not None:
        query = query.where(_k.c.attempt == attempt)
    conn.execute(query.values(revoked_at=now))
