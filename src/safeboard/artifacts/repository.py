"""Queries on artifacts. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts.repository import username_of
from safeboard.artifacts.models import ArtifactRow, ArtifactTombstoneRow
from safeboard.vocabulary import ArtifactState

__all__ = [
    "Artifact",
    "bury",
    "count_for_run",
    "create",
    "delete",
    "delete_stale",
    "expired_run",
    "get",
    "get_by_upload",
    "ids_with_prefix",
    "list_for_run",
    "mark_ready",
    "named_with_prefix",
    "project_bytes",
    "set_received",
    "stale_bytes",
    "stale_uploads",
    "touch",
    "user_bytes",
]

_a = cast(sa.Table, ArtifactRow.__table__)
_tomb = cast(sa.Table, ArtifactTombstoneRow.__table__)
_UPLOADING = ArtifactState.UPLOADING.value


@dataclass(frozen=True)
class Artifact:
    id: str
    run_id: str
    project_id: int
    name: str
    kind: str
    content_type: str
    size: int
    sha256: str
    step: int | None
    state: str
    received: int
    upload_id: str | None
    created_by: str | None  # the creator's username; None once that account is gone
    created_at: datetime
    ready_at: datetime | None
    updated_at: datetime  # last activity: declared, bytes recorded, ready


def _select() -> sa.Select[Any]:
    return sa.select(_a, username_of(_a.c.created_by).label("username"))


def _artifact(row: sa.Row[Any]) -> Artifact:
    m = row._mapping
    return Artifact(
        id=m["id"], run_id=m["run_id"], project_id=m["project_id"], name=m["name"],
        kind=m["kind"], content_type=m["content_type"], size=m["size"], sha256=m["sha256"],
        step=m["step"], state=m["state"], received=m["received"], upload_id=m["upload_id"],
        created_by=m["username"], created_at=m["created_at"], ready_at=m["ready_at"],
        updated_at=m["updated_at"],
    )  # fmt: skip


def create(conn: Connection, **values: Any) -> None:
    conn.execute(sa.insert(_a).values(**values))


def get(conn: Connection, artifact_id: str) -> Artifact | None:
    row = conn.execute(_select().where(_a.c.id == artifact_id)).first()
    return _artifact(row) if row else None


def get_by_upload(conn: Connection, run_id: str, upload_id: str) -> Artifact | None:
    query = _select().where(_a.c.run_id == run_id, _a.c.upload_id == upload_id)
    row = conn.execute(query).first()
    return _artifact(row) if row else None


def list_for_run(
    conn: Connection, run_id: str, *, after: tuple[datetime, str] | None = None, limit: int
) -> list[Artifact]:
    """A run's artifacts in the order they were declared, ``limit`` at most, starting after
    the (created_at, id) of the last artifact of the previous page."""
    key = sa.tuple_(_a.c.created_at, _a.c.id)
    query = _select().where(_a.c.run_id == run_id)
    if after is not None:
        query = query.where(key > sa.tuple_(*after))
    query = query.order_by(_a.c.created_at, _a.c.id).limit(limit)
    return [_artifact(r) for r in conn.execute(query)]


def count_for_run(conn: Connection, run_id: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(_a.c.run_id == run_id)).scalar_one())


def project_bytes(conn: Connection, project_id: int) -> int:
    """Declared bytes of every artifact of the project, finished or in progress."""
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_a.c.size), 0)).where(_a.c.project_id == project_id)
    ).scalar_one()
    return int(total)


def user_bytes(conn: Connection, user_id: int) -> int:
    """Declared bytes of every artifact ``user_id`` uploaded, finished or in progress, in
    every project."""
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_a.c.size), 0)).where(_a.c.created_by == user_id)
    ).scalar_one()
    return int(total)


def set_received(conn: Connection, artifact_id: str, received: int, now: datetime) -> bool:
    """False when no unfinished row is there (deleted or expired meanwhile)."""
    done = conn.execute(
        sa.update(_a)
        .where(_a.c.id == artifact_id, _a.c.state == _UPLOADING)
        .values(received=received, updated_at=now)
    )
    return done.rowcount > 0


def touch(conn: Connection, artifact_id: str, now: datetime) -> bool:
    """Record activity on an unfinished upload (declared again: the client resumes); False
    when the row is gone (expired by another replica meanwhile)."""
    touched = conn.execute(
        sa.update(_a).where(_a.c.id == artifact_id, _a.c.state == _UPLOADING).values(updated_at=now)
    )
    return touched.rowcount > 0


def mark_ready(conn: Connection, artifact_id: str, content_type: str, now: datetime) -> bool:
    """False when the row is gone (deleted meanwhile)."""
    ready = {
        "state": ArtifactState.READY.value,
        "received": _a.c.size,
        "content_type": content_type,
    }
    done = conn.execute(
        sa.update(_a).where(_a.c.id == artifact_id).values(ready_at=now, updated_at=now, **ready)
    )
    return done.rowcount > 0


def delete(conn: Connection, artifact_id: str) -> bool:
    return conn.execute(sa.delete(_a).where(_a.c.id == artifact_id)).rowcount > 0


def _stale(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(_a.c.state == _UPLOADING, _a.c.updated_at < cutoff)


def stale_bytes(conn: Connection, cutoff: datetime, project_id: int) -> int:
    """Declared bytes of a project's unfinished uploads idle since ``cutoff``."""
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_a.c.size), 0)).where(
            _stale(cutoff), _a.c.project_id == project_id
        )
    ).scalar_one()
    return int(total)


def stale_uploads(
    conn: Connection,
    cutoff: datetime,
    project_id: int | None = None,
    limit: int = 1000,
    after: tuple[datetime, str] | None = None,
) -> list[Artifact]:
    """Unfinished uploads with no activity since ``cutoff``, oldest first; of one project
    or of all; after the (updated_at, id) of the last one of the previous batch."""
    query = _select().where(_stale(cutoff))
    if project_id is not None:
        query = query.where(_a.c.project_id == project_id)
    if after is not None:
        query = query.where(sa.tuple_(_a.c.updated_at, _a.c.id) > sa.tuple_(*after))
    query = query.order_by(_a.c.updated_at, _a.c.id).limit(limit)
    return [_artifact(r) for r in conn.execute(query)]


def delete_stale(conn: Connection, artifact_id: str, cutoff: datetime) -> bool:
    """Delete the row only if it is still unfinished and still idle since ``cutoff``:
    False when a request resumed or finished it, or another replica expired it first."""
    deleted = conn.execute(sa.delete(_a).where(_a.c.id == artifact_id, _stale(cutoff)))
    return deleted.rowcount > 0


def ids_with_prefix(
    conn: Connection, prefix: str, project_ids: list[int] | None, limit: int
) -> list[str]:
    """Ids of artifacts that start with ``prefix`` (lowercase hex), in the given projects
    (all when None), sorted; a range scan on the primary key."""
    query = sa.select(_a.c.id).where(_a.c.id >= prefix, _a.c.id < prefix + "g")
    if project_ids is not None:
        query = query.where(_a.c.project_id.in_(project_ids))
    return list(conn.execute(query.order_by(_a.c.id).limit(limit)).scalars())


def named_with_prefix(conn: Connection, run_ids: list[str], prefix: str) -> list[Artifact]:
    """The complete artifacts of these runs whose names start with ``prefix``, oldest
    first (the last of a name is its newest version)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = (
        _select()
        .where(
            _a.c.run_id.in_(run_ids),
            _a.c.state == ArtifactState.READY.value,
            _a.c.name.like(escaped + "%", escape="\\"),
        )
        .order_by(_a.c.created_at, _a.c.id)
    )
    return [_artifact(r) for r in conn.execute(query)]


def bury(conn: Connection, artifact_id: str, run_id: str, now: datetime) -> None:
    """Record that the server expired this upload (its row is deleted with it)."""
    conn.execute(sa.insert(_tomb).values(id=artifact_id, run_id=run_id, expired_at=now))


def expired_run(conn: Connection, artifact_id: str) -> str | None:
    """The run of an upload the server expired, or None (never there, or deleted)."""
    run_id: str | None = conn.execute(
        sa.select(_tomb.c.run_id).where(_tomb.c.id == artifact_id)
    ).scalar()
    return run_id
