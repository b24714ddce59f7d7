"""Queries on projects and their grants. Projects gain runs and more with later work; the
grant model and its checks are here from the start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts.models import UserRow
from safeboard.auth.permissions import ProjectRole
from safeboard.errors import Conflict
from safeboard.projects.models import ProjectGrantRow, ProjectRow
from safeboard.runs.models import RunRow

__all__ = [
    "NAME_TAKEN",
    "Activity",
    "Project",
    "activity",
    "create",
    "created_by",
    "get",
    "get_by_name",
    "grant",
    "grants",
    "revoke",
    "role_of",
    "visible",
]

_p = cast(sa.Table, ProjectRow.__table__)
_g = cast(sa.Table, ProjectGrantRow.__table__)


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    description: str
    created_at: datetime
    created_by: int | None


def _project(row: sa.Row[tuple[object, ...]]) -> Project:
    return Project(**{f: row._mapping[f] for f in Project.__dataclass_fields__})


# The one answer to a taken name, whether or not the caller can see that project: it says
# the name exists and nothing else (not who owns it, not whether you have a grant in it).
NAME_TAKEN = "project name not available"


def create(
    conn: Connection, *, name: str, owner_id: int, now: datetime, description: str = ""
) -> Project:
    """A project, with its creator as owner."""
    if conn.execute(sa.select(_p.c.id).where(_p.c.name == name)).first():
        raise Conflict(NAME_TAKEN)
    key = conn.execute(
        sa.insert(_p).values(
            name=name, description=description, created_at=now, created_by=owner_id
        )
    ).inserted_primary_key
    assert key is not None  # noqa: S101
    grant(conn, int(key[0]), owner_id, ProjectRole.OWNER)
    project = get(conn, int(key[0]))
    assert project is not None  # noqa: S101
    return project


def created_by(conn: Connection, user_id: int) -> int:
    """How many of the existing projects ``user_id`` created. The user's row is locked
    first (PostgreSQL; SQLite has one writer), so that one user's concurrent creations
    count each other."""
    # FOR NO KEY UPDATE: it serialises these counts, and does not block the KEY SHARE locks
    # that inserts referencing the user take (a grant, an artifact), so no deadlock with them.
    conn.execute(sa.select(UserRow.id).where(UserRow.id == user_id).with_for_update(key_share=True))
    count = conn.execute(
        sa.select(sa.func.count()).select_from(_p).where(_p.c.created_by == user_id)
    ).scalar_one()
    return int(count)


def get(conn: Connection, project_id: int) -> Project | None:
    row = conn.execute(sa.select(_p).where(_p.c.id == project_id)).first()
    return _project(row) if row else None


def get_by_name(conn: Connection, name: str) -> Project | None:
    row = conn.execute(sa.select(_p).where(_p.c.name == name)).first()
    return _project(row) if row else None


def role_of(conn: Connection, project_id: int, user_id: int) -> ProjectRole | None:
    value = conn.execute(
        sa.select(_g.c.role).where(_g.c.project_id == project_id, _g.c.user_id == user_id)
    ).scalar()
    return ProjectRole(value) if value is not None else None


def grants(conn: Connection, project_id: int) -> dict[int, ProjectRole]:
    rows = conn.execute(sa.select(_g.c.user_id, _g.c.role).where(_g.c.project_id == project_id))
    return {int(user_id): ProjectRole(role) for user_id, role in rows}


def grant(conn: Connection, project_id: int, user_id: int, role: ProjectRole) -> None:
    """Give ``user_id`` ``role`` in the project, replacing any role they had."""
    revoke(conn, project_id, user_id)
    conn.execute(sa.insert(_g).values(project_id=project_id, user_id=user_id, role=role.value))


def revoke(conn: Connection, project_id: int, user_id: int) -> bool:
    query = sa.delete(_g).where(_g.c.project_id == project_id, _g.c.user_id == user_id)
    return conn.execute(query).rowcount > 0


def visible(
    conn: Connection, user_id: int, everyone: bool
) -> list[tuple[Project, ProjectRole | None]]:
    """Projects a user holds a grant in (all projects when ``everyone``), with the grant."""
    grant = sa.select(_g.c.project_id, _g.c.role).where(_g.c.user_id == user_id).subquery()
    query = sa.select(_p, grant.c.role).outerjoin(grant, grant.c.project_id == _p.c.id)
    if not everyone:
        query = query.where(grant.c.role.is_not(None))
    rows = conn.execute(query.order_by(_p.c.name)).all()
    return [(_project(row), ProjectRole(row.role) if row.role else None) for row in rows]


@dataclass(frozen=True)
class Activity:
    runs: int = 0
    last_run_at: datetime | None = None


def activity(conn: Connection, project_ids: list[int]) -> dict[int, Activity]:
    """How many runs each project holds and when its newest one was created (one grouped
    query over the runs' project index)."""
    if not project_ids:
        return {}
    query = (
        sa.select(RunRow.project_id, sa.func.count(), sa.func.max(RunRow.created_at))
        .where(RunRow.project_id.in_(project_ids))
        .group_by(RunRow.project_id)
    )
    return {pid: Activity(count, last) for pid, count, last in conn.execute(query)}
