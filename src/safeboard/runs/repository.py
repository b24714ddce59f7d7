"""Queries on runs and their tags. Returns plain ``Run`` objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.runs.models import RunRow, RunTagRow

__all__ = ["Run", "create", "get", "list_runs", "set_tags", "update"]

_r = cast(sa.Table, RunRow.__table__)
_t = cast(sa.Table, RunTagRow.__table__)


@dataclass(frozen=True)
class Run:
    id: str
    project_id: int
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    params: dict[str, Any]
    system: dict[str, Any]
    notes: str
    created_by: int | None
    tags: dict[str, str] = field(default_factory=dict)


def _tags(conn: Connection, run_ids: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    if run_ids:
        rows = conn.execute(sa.select(_t).where(_t.c.run_id.in_(run_ids)))
        for row in rows:
            found[row.run_id][row.key] = row.value
    return found


def _runs(conn: Connection, rows: list[sa.Row[Any]]) -> list[Run]:
    tags = _tags(conn, [row.id for row in rows])
    fields = [f for f in Run.__dataclass_fields__ if f != "tags"]
    return [Run(**{f: row._mapping[f] for f in fields}, tags=tags[row.id]) for row in rows]


def get(conn: Connection, run_id: str) -> Run | None:
    rows = conn.execute(sa.select(_r).where(_r.c.id == run_id)).all()
    return _runs(conn, list(rows))[0] if rows else None


def create(conn: Connection, run: Run) -> None:
    values = {f: getattr(run, f) for f in Run.__dataclass_fields__ if f != "tags"}
    conn.execute(sa.insert(_r).values(**values))
    set_tags(conn, run.id, run.tags)


def set_tags(conn: Connection, run_id: str, tags: Mapping[str, str | None]) -> None:
    """Set tags; a None value removes the tag."""
    for key, value in tags.items():
        conn.execute(sa.delete(_t).where(_t.c.run_id == run_id, _t.c.key == key))
        if value is not None:
            conn.execute(sa.insert(_t).values(run_id=run_id, key=key, value=value))


def update(conn: Connection, run_id: str, **values: Any) -> None:
    if values:
        conn.execute(sa.update(_r).where(_r.c.id == run_id).values(**values))


def list_runs(
    conn: Connection,
    project_id: int,
    *,
    where: sa.ColumnElement[bool] | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[Run]:
    """Runs of a project ordered by creation (then id), a page at a time: ``after`` is the
    (created_at, id) of the last run of the previous page."""
    query = sa.select(_r).where(_r.c.project_id == project_id)
    if where is not None:
        query = query.where(where)
    key = sa.tuple_(_r.c.created_at, _r.c.id)
    if after is not None:
        query = query.where(key < sa.tuple_(*after) if newest_first else key > sa.tuple_(*after))
    order = (_r.c.created_at.desc(), _r.c.id.desc()) if newest_first else (_r.c.created_at, _r.c.id)
    rows = conn.execute(query.order_by(*order).limit(limit)).all()
    return _runs(conn, list(rows))
