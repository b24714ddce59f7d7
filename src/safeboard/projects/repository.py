"""Queries on projects and their grants. Projects gain runs and more with later work; the
grant model and its checks are here from the start."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts import repository as accounts
from safeboard.auth.permissions import ProjectRole
from safeboard.errors import Conflict
from safeboard.projects.models import ProjectGrantRow, ProjectRenameRow, ProjectRow

__all__ = [
    "NAME_TAKEN",
    "Activity",
    "ActivityReader",
    "Project",
    "create",
    "created_by",
    "get",
    "get_by_name",
    "grant",
    "grant_in",
    "grants",
    "grants_among",
    "lock",
    "revoke",
    "role_of",
    "visible",
]

_p = cast(sa.Table, ProjectRow.__table__)
_g = cast(sa.Table, ProjectGrantRow.__table__)
_r = cast(sa.Table, ProjectRenameRow.__table__)


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
    # The name is this project's now: a project that gave it up is no longer found by it.
    conn.execute(sa.delete(_r).where(_r.c.old_name == name))
    grant(conn, int(key[0]), owner_id, ProjectRole.OWNER)
    project = get(conn, int(key[0]))
    assert project is not None  # noqa: S101
    return project


def created_by(conn: Connection, user_id: int) -> int:
    """How many of the existing projects ``user_id`` created. The user's row is locked
    first (PostgreSQL; SQLite has one writer), so that one user's concurrent creations
    count each other."""
    accounts.lock_user(conn, user_id)
    count = conn.execute(
        sa.select(sa.func.count()).select_from(_p).where(_p.c.created_by == user_id)
    ).scalar_one()
    return int(count)


LIVE = _p.c.deleted_at.is_(None)  # not in the trash (safeboard.trash): what reads see


def get(conn: Connection, project_id: int) -> Project | None:
    row = conn.execute(sa.select(_p).where(_p.c.id == project_id, LIVE)).first()
    return _project(row) if row else None


def get_by_name(conn: Connection, name: str) -> Project | None:
    row = conn.execute(sa.select(_p).where(_p.c.name == name, LIVE)).first()
    return _project(row) if row else None


def lock(conn: Connection, project_id: int) -> None:
    """Lock the project's row until the transaction ends (PostgreSQL; SQLite has one
    writer): what serialises, say, the artifact declarations of one project."""
    conn.execute(sa.select(_p.c.id).where(_p.c.id == project_id).with_for_update())


def grant_in(conn: Connection, project_id: int, user_id: int) -> tuple[bool, ProjectRole | None]:
    """Whether the project exists, and ``user_id``'s role in it (None: no grant); what
    binding an API key to a project asks (``accounts.api_keys.ProjectGrants``)."""
    if get(conn, project_id) is None:
        return False, None
    return True, role_of(conn, project_id, user_id)


def grants_among(
    conn: Connection, user_ids: Collection[int], project_ids: Collection[int]
) -> dict[tuple[int, int], ProjectRole]:
    """The grants of these users in these projects, by (project id, user id): one query,
    for the re-check of open event streams (runs/standing.py)."""
    rows = conn.execute(
        sa.select(_g.c.project_id, _g.c.user_id, _g.c.role).where(
            _g.c.user_id.in_(list(user_ids)), _g.c.project_id.in_(list(project_ids))
        )
    )
    return {(p, u): ProjectRole(role) for p, u, role in rows}


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
    query = query.where(LIVE)
    if not everyone:
        query = query.where(grant.c.role.is_not(None))
    rows = conn.execute(query.order_by(_p.c.name)).all()
    return [(_project(row), ProjectRole(row.role) if row.role else None) for row in rows]


@dataclass(frozen=True)
class Activity:
    runs: int = 0
    last_run_at: datetime | None = None


class ActivityReader(Protocol):
    """How many runs each project holds and when its newest one was created, by project id
    (absent: no runs). The runs domain answers it (``runs.repository.activity``); projects
    sit below runs, so it is passed in where ``ProjectService`` is built."""

    def __call__(self, conn: Connection, project_ids: list[int]) -> dict[int, Activity]: ...
