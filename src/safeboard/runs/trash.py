"""Queries on a project's trash (runs whose ``deleted_at`` is set): moving runs in and
out, listing it, and what the retention sweep finds due. The use cases around them
(authorization, tasks, artifacts' files, audit, purging) are safeboard.trash's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.runs.models import RunRow
from safeboard.runs.repository import LIVE
from safeboard.runs.search import run_filter

__all__ = [
    "Trashed",
    "matching",
    "of_project",
    "older_than",
    "project_put_back",
    "project_to_trash",
    "put_back",
    "to_trash",
    "trash_of",
    "trashed",
    "trashed_before",
]

_r = cast(sa.Table, RunRow.__table__)
_IN_TRASH = _r.c.deleted_at.is_not(None)


@dataclass(frozen=True)
class Trashed:
    id: str
    project_id: int
    name: str
    status: str
    created_at: datetime
    deleted_at: datetime
    deleted_by: str


def to_trash(conn: Connection, run_ids: Sequence[str], by: str, now: datetime) -> list[str]:
    """Move these runs (those not in the trash already) to it; the ids moved."""
    if not run_ids:
        return []
    query = (
        sa.update(_r)
        .where(_r.c.id.in_(run_ids), LIVE)
        .values(deleted_at=now, deleted_by=by[:200])
        .returning(_r.c.id)
    )
    return sorted(conn.execute(query).scalars())


def project_to_trash(conn: Connection, project_id: int, by: str, now: datetime) -> int:
    """Move every live run of the project to the trash (the project goes there)."""
    query = sa.update(_r).where(_r.c.project_id == project_id, LIVE)
    return conn.execute(query.values(deleted_at=now, deleted_by=by[:200])).rowcount


def project_put_back(conn: Connection, project_id: int, deleted_at: datetime) -> int:
    """Take back the project's runs that went to the trash with it (at ``deleted_at``)."""
    query = sa.update(_r).where(_r.c.project_id == project_id, _r.c.deleted_at == deleted_at)
    return conn.execute(query.values(deleted_at=None, deleted_by=None)).rowcount


def put_back(conn: Connection, run_id: str) -> bool:
    """Take a run out of the trash; False when it is not there."""
    query = sa.update(_r).where(_r.c.id == run_id, _IN_TRASH)
    return conn.execute(query.values(deleted_at=None, deleted_by=None)).rowcount == 1


def _trashed(row: sa.Row[object]) -> Trashed:
    m = row._mapping
    return Trashed(id=m["id"], project_id=m["project_id"], name=m["name"], status=m["status"],
                   created_at=m["created_at"], deleted_at=m["deleted_at"],
                   deleted_by=m["deleted_by"] or "")  # fmt: skip


_COLUMNS = [_r.c[n] for n in ("id", "project_id", "name", "status", "created_at",
                              "deleted_at", "deleted_by")]  # fmt: skip


def trash_of(conn: Connection, project_id: int, limit: int) -> list[Trashed]:
    """A project's trash, most recently deleted first."""
    query = sa.select(*_COLUMNS).where(_r.c.project_id == project_id, _IN_TRASH)
    query = query.order_by(_r.c.deleted_at.desc(), _r.c.id).limit(limit)
    return [_trashed(row) for row in conn.execute(query)]


def trashed(conn: Connection, run_id: str) -> Trashed | None:
    """One run in the trash, or None."""
    row = conn.execute(sa.select(*_COLUMNS).where(_r.c.id == run_id, _IN_TRASH)).first()
    return _trashed(row) if row else None


def matching(conn: Connection, project_id: int, filter_text: str | None, limit: int) -> list[str]:
    """Ids of the project's live runs that match the filter (the runs table's language),
    oldest first, at most ``limit``: what a bulk delete would move."""
    query = sa.select(_r.c.id).where(_r.c.project_id == project_id, LIVE)
    condition = run_filter(filter_text, conn.dialect.name)
    if condition is not None:
        query = query.where(condition)
    return list(conn.execute(query.order_by(_r.c.created_at, _r.c.id).limit(limit)).scalars())


def trashed_before(conn: Connection, project_id: int, cutoff: datetime, limit: int) -> list[str]:
    """Ids of the project's runs in the trash since before ``cutoff``."""
    query = sa.select(_r.c.id).where(_r.c.project_id == project_id, _r.c.deleted_at < cutoff)
    return list(conn.execute(query.order_by(_r.c.deleted_at).limit(limit)).scalars())


def older_than(conn: Connection, project_id: int, cutoff: datetime, limit: int) -> list[str]:
    """Ids of the project's live runs created before ``cutoff``."""
    query = sa.select(_r.c.id).where(_r.c.project_id == project_id, LIVE,
                                     _r.c.created_at < cutoff)  # fmt: skip
    return list(conn.execute(query.order_by(_r.c.created_at).limit(limit)).scalars())


def of_project(conn: Connection, project_id: int, limit: int) -> list[str]:
    """Ids of the project's runs, live or in the trash (a project being purged)."""
    query = sa.select(_r.c.id).where(_r.c.project_id == project_id).order_by(_r.c.id)
    return list(conn.execute(query.limit(limit)).scalars())
