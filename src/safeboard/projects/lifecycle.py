"""Queries behind renaming a project and moving it to the trash and back (issue 18).
A project in the trash is hidden from every read (``repository.LIVE``) but keeps its name,
its grants and its keys until it is purged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.errors import Conflict
from safeboard.projects.models import ProjectGrantRow, ProjectRenameRow, ProjectRow
from safeboard.projects.repository import LIVE, NAME_TAKEN

__all__ = ["TrashedProject", "in_trash", "put_back", "rename", "renamed_to", "to_trash",
           "trashed_before", "trashed_named", "trashed_projects"]  # fmt: skip

_p = cast(sa.Table, ProjectRow.__table__)
_g = cast(sa.Table, ProjectGrantRow.__table__)
_r = cast(sa.Table, ProjectRenameRow.__table__)
_COLUMNS = (_p.c.id, _p.c.name, _p.c.deleted_at, _p.c.deleted_by, _p.c.trash_days)


@dataclass(frozen=True)
class TrashedProject:
    id: int
    name: str
    deleted_at: datetime
    deleted_by: str
    trash_days: int | None = None  # its own retention (None: the server's)


def _trashed(row: Any) -> TrashedProject:  # a row of _COLUMNS
    return TrashedProject(row.id, row.name, row.deleted_at, row.deleted_by or "", row.trash_days)


def rename(conn: Connection, project_id: int, old: str, name: str, now: datetime) -> None:
    """Conflict (NAME_TAKEN) when another project, live or in the trash, holds ``name``;
    Conflict too when the project is no longer called ``old`` (a rename that committed
    since it was read: on PostgreSQL this one waited on its row lock). ``old`` is
    remembered for this project (its links redirect); ``name`` is no longer an old name of
    any project (it is this one's now)."""
    taken = sa.select(_p.c.id).where(_p.c.name == name, _p.c.id != project_id)
    if conn.execute(taken).first():
        raise Conflict(NAME_TAKEN)
    moved = sa.update(_p).where(_p.c.id == project_id, _p.c.name == old).values(name=name)
    if conn.execute(moved).rowcount != 1:
        raise Conflict(f"project {old} was renamed meanwhile: read it again")
    conn.execute(sa.delete(_r).where(_r.c.old_name.in_((old, name))))
    conn.execute(sa.insert(_r).values(old_name=old, project_id=project_id, renamed_at=now))


def renamed_to(conn: Connection, old: str) -> int | None:
    """The id of the live project that was last called ``old`` and gave the name up, when
    no project (live or in the trash) holds it now; None otherwise. Chains of renames end
    at the project's current name, since the row holds the project's id."""
    if conn.execute(sa.select(_p.c.id).where(_p.c.name == old)).first():
        return None
    query = sa.select(_r.c.project_id).join(_p, _p.c.id == _r.c.project_id)
    found = conn.execute(query.where(_r.c.old_name == old, LIVE)).scalar()
    return int(found) if found is not None else None


def to_trash(conn: Connection, project_id: int, by: str, now: datetime) -> bool:
    query = sa.update(_p).where(_p.c.id == project_id, LIVE)
    return conn.execute(query.values(deleted_at=now, deleted_by=by[:200])).rowcount == 1


def put_back(conn: Connection, project_id: int) -> bool:
    query = sa.update(_p).where(_p.c.id == project_id, _p.c.deleted_at.is_not(None))
    return conn.execute(query.values(deleted_at=None, deleted_by=None)).rowcount == 1


def in_trash(conn: Connection, project_id: int) -> bool:
    """Whether the project is (still) in the trash: a purge checks between its steps."""
    query = sa.select(_p.c.id).where(_p.c.id == project_id, _p.c.deleted_at.is_not(None))
    return conn.execute(query).first() is not None


def trashed_named(conn: Connection, name: str) -> TrashedProject | None:
    query = sa.select(*_COLUMNS).where(_p.c.name == name, _p.c.deleted_at.is_not(None))
    row = conn.execute(query).first()
    return _trashed(row) if row else None


def trashed_projects(conn: Connection, owner_id: int | None) -> list[TrashedProject]:
    """Projects in the trash, most recently deleted first: those ``owner_id`` owns (None:
    every one, for an admin)."""
    query = sa.select(*_COLUMNS).where(_p.c.deleted_at.is_not(None))
    if owner_id is not None:
        owned = sa.select(_g.c.project_id).where(_g.c.user_id == owner_id, _g.c.role == "owner")
        query = query.where(_p.c.id.in_(owned))
    return [_trashed(row) for row in conn.execute(query.order_by(_p.c.deleted_at.desc()))]


def trashed_before(conn: Connection, cutoff: datetime) -> list[int]:
    """Ids of the projects in the trash since before ``cutoff``."""
    query = sa.select(_p.c.id).where(_p.c.deleted_at < cutoff).order_by(_p.c.deleted_at)
    return list(conn.execute(query).scalars())
