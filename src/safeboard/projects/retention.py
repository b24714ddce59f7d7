"""Each project's retention (migration 0027): how long its trash keeps deleted runs
(``trash_days``; None: the server's ``retention.trash_days``) and after how many days its
runs move to the trash by themselves (``max_run_age_days``; None: never)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.projects.models import ProjectRow

__all__ = ["Retention", "all_retention", "retention_of", "set_retention"]

_p = cast(sa.Table, ProjectRow.__table__)
MAX_DAYS = 36500


@dataclass(frozen=True)
class Retention:
    project_id: int
    trash_days: int | None
    max_run_age_days: int | None


def _retention(row: Any) -> Retention:  # a row of _COLUMNS
    return Retention(row.id, row.trash_days, row.max_run_age_days)


_COLUMNS = (_p.c.id, _p.c.trash_days, _p.c.max_run_age_days)


def retention_of(conn: Connection, project_id: int) -> Retention | None:
    row = conn.execute(sa.select(*_COLUMNS).where(_p.c.id == project_id)).first()
    return _retention(row) if row else None


def all_retention(conn: Connection) -> list[Retention]:
    """Every project's retention, by id (what the sweep walks)."""
    return [_retention(row) for row in conn.execute(sa.select(*_COLUMNS).order_by(_p.c.id))]


def set_retention(
    conn: Connection, project_id: int, *, trash_days: int | None, max_run_age_days: int | None
) -> None:
    values = {"trash_days": trash_days, "max_run_age_days": max_run_age_days}
    conn.execute(sa.update(_p).where(_p.c.id == project_id).values(**values))
