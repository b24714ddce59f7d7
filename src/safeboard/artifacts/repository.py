"""Queries on artifacts. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.artifacts.models import ArtifactRow
from safeboard.users.models import UserRow

__all__ = [
    "Artifact",
    "create",
    "delete",
    "get",
    "get_by_upload",
    "list_for_run",
    "mark_ready",
    "project_bytes",
    "set_received",
]

_a = cast(sa.Table, ArtifactRow.__table__)
_u = cast(sa.Table, UserRow.__table__)


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


def _select() -> sa.Select[Any]:
    return sa.select(_a, _u.c.username).select_from(_a.outerjoin(_u, _u.c.id == _a.c.created_by))


def _artifact(row: sa.Row[Any]) -> Artifact:
    m = row._mapping
    return Artifact(
        id=m["id"], run_id=m["run_id"], project_id=m["project_id"], name=m["name"],
        kind=m["kind"], content_type=m["content_type"], size=m["size"], sha256=m["sha256"],
        step=m["step"], state=m["state"], received=m["received"], upload_id=m["upload_id"],
        created_by=m["username"], created_at=m["created_at"], ready_at=m["ready_at"],
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


def list_for_run(conn: Connection, run_id: str) -> list[Artifact]:
    query = _select().where(_a.c.run_id == run_id).order_by(_a.c.created_at, _a.c.id)
    return [_artifact(r) for r in conn.execute(query)]


def project_bytes(conn: Connection, project_id: int) -> int:
    """Declared bytes of every artifact of the project, finished or in progress."""
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_a.c.size), 0)).where(_a.c.project_id == project_id)
    ).scalar_one()
    return int(total)


def set_received(conn: Connection, artifact_id: str, received: int) -> None:
    conn.execute(
        sa.update(_a)
        .where(_a.c.id == artifact_id, _a.c.state == "uploading")
        .values(received=received)
    )


def mark_ready(conn: Connection, artifact_id: str, content_type: str, now: datetime) -> bool:
    """False when the row is gone (deleted meanwhile)."""
    done = conn.execute(
        sa.update(_a)
        .where(_a.c.id == artifact_id)
        .values(state="ready", received=_a.c.size, content_type=content_type, ready_at=now)
    )
    return done.rowcount > 0


def delete(conn: Connection, artifact_id: str) -> bool:
    return conn.execute(sa.delete(_a).where(_a.c.id == artifact_id)).rowcount > 0
