"""Queries on runs and their tags. Returns plain ``Run`` and ``Listed`` objects.

Whole configs are read for one run at a time only (the run page, its API answer, a
config update); lists read the columns they show and the config values asked for, each
cut to a bounded length in SQL (projection.py), so a list costs the same whatever the
runs' configs hold.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    document_problem,
)
from safeboard.metrics.queries import last_values
from safeboard.projects.repository import Activity
from safeboard.runs.models import RunRow, RunTagRow
from safeboard.runs.projection import json_text, read_json_text

__all__ = [
    "Listed",
    "Run",
    "activity",
    "create",
    "get",
    "listed",
    "live_among",
    "set_tags",
    "tags_of",
    "update",
]

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
    # "config", "system": not read (asked not to, or stored beyond the bounds of
    # safeboard.documents before they were enforced); such a document reads as empty.
    withheld: tuple[str, ...] = ()
    # In the project's trash since, by whom (None: not deleted); read only with ``trashed``.
    deleted_at: datetime | None = None
    deleted_by: str | None = None


@dataclass(frozen=True)
class Listed:
    """A run as lists show it: no system information or notes; of its config only the
    paths asked for (dotted), each a JSON value of bounded length; of its metrics the last
    values of the keys asked for."""

    id: str
    project_id: int
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    tags: dict[str, str]
    config: dict[str, Any]  # dotted path -> value
    omitted: tuple[str, ...] = ()  # paths whose value is too long for a list
    metrics: dict[str, float] = field(default_factory=dict)  # key -> last value (NaN too)


# A stored document is read only when its text is at most this long: the JSON the database
# keeps may escape non-ASCII characters (up to 12 characters for 4 UTF-8 bytes) and adds
# spaces, so a document within MAX_DOCUMENT_BYTES always fits.
STORED_CHARS_READ = 4 * MAX_DOCUMENT_BYTES
# Characters of one config value in a list (its JSON text): numbers, names, short lists.
LISTED_VALUE_CHARS = 1_000
_DOCUMENTS = {"params": "config", "system": "system"}
_HEAD = [c for c in _r.c if c.name not in _DOCUMENTS]


def tags_of(
    conn: Connection, run_ids: Sequence[str], keys: Sequence[str] | None = None
) -> dict[str, dict[str, str]]:
    """The tags of each run (only ``keys`` when given): at most MAX_TAGS a run, values cut
    to MAX_TAG_VALUE_CHARS, whatever an older server stored."""
    found: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    if not run_ids or (keys is not None and not keys):
        return found
    number = sa.func.row_number().over(partition_by=_t.c.run_id, order_by=_t.c.key)
    numbered = sa.select(
        _t.c.run_id,
        _t.c.key,
        sa.func.substr(_t.c.value, 1, MAX_TAG_VALUE_CHARS).label("value"),
        number.label("n"),
    ).where(_t.c.run_id.in_(run_ids))
    if keys is not None:
        numbered = numbered.where(_t.c.key.in_(keys))
    tags = numbered.subquery()
    rows = conn.execute(
        sa.select(tags.c.run_id, tags.c.key, tags.c.value).where(tags.c.n <= MAX_TAGS)
    )
    for row in rows:
        found[row.run_id][row.key] = row.value
    return found


def _document(text: str | None, name: str) -> dict[str, Any] | None:
    """A stored document, or None when it is beyond the bounds (too long to read, too deep
    to parse or to answer with)."""
    if text is None or len(text) > STORED_CHARS_READ:
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return document if document_problem(document, name) is None else None


LIVE = _r.c.deleted_at.is_(None)  # not in the trash: what every read shows


@functools.cache
def _get_query(dialect: str, documents: bool, trashed: bool) -> sa.Select[Any]:
    """One run's row; its documents as text of at most STORED_CHARS_READ + 1 characters."""
    texts = [
        json_text(_r.c[column], (), dialect, STORED_CHARS_READ).label(column)
        for column in _DOCUMENTS
    ]
    query = sa.select(*_HEAD, *(texts if documents else ()))
    query = query.where(_r.c.id == sa.bindparam("run_id"))
    return query if trashed else query.where(LIVE)


def get(
    conn: Connection, run_id: str, *, documents: bool = True, trashed: bool = False
) -> Run | None:
    """One run; without ``documents`` its config and system information are left unread
    (access checks, metric ingest). A run in the trash is None unless ``trashed`` (the
    trash's own use cases, safeboard.trash)."""
    query = _get_query(conn.dialect.name, documents, trashed)
    row = conn.execute(query, {"run_id": run_id}).first()
    if row is None:
        return None
    values = {c.name: row._mapping[c.name] for c in _HEAD}
    withheld = []
    for column, name in _DOCUMENTS.items():
        document = _document(row._mapping[column], name) if documents else None
        if document is None:
            withheld.append(name)
        values[column] = document or {}
    return Run(**values, tags=tags_of(conn, [run_id])[run_id], withheld=tuple(withheld))


_NOT_COLUMNS = ("tags", "withheld")


def create(conn: Connection, run: Run) -> None:
    values = {f: getattr(run, f) for f in Run.__dataclass_fields__ if f not in _NOT_COLUMNS}
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


def listed(
    conn: Connection,
    project_id: int,
    run_ids: Sequence[str],
    *,
    config_paths: Sequence[str] = (),
    tag_keys: Sequence[str] | None = None,
    metric_keys: Sequence[str] = (),
) -> list[Listed]:
    """The runs of ``run_ids`` in that order, as lists show them: of their configs only the
    values at ``config_paths`` (dotted), at most LISTED_VALUE_CHARS characters each; their
    tags (only ``tag_keys`` when given); the last values of ``metric_keys``."""
    dialect = conn.dialect.name
    paths = list(dict.fromkeys(config_paths))
    keys = list(dict.fromkeys(metric_keys))
    values = [
        json_text(_r.c.params, path.split("."), dialect, LISTED_VALUE_CHARS).label(f"v{i}")
        for i, path in enumerate(paths)
    ]
    head = [_r.c[name] for name in ("id", "name", "status", "created_at", "ended_at")]
    query = sa.select(*head, *values).where(_r.c.id.in_(run_ids), LIVE)
    found = {row.id: row for row in conn.execute(query)} if run_ids else {}
    tags = tags_of(conn, run_ids, keys=tag_keys)
    lasts = last_values(conn, run_ids, keys)
    listed = []
    for run_id in run_ids:
        row = found.get(run_id)
        if row is None:
            continue
        config: dict[str, Any] = {}
        omitted: list[str] = []
        for i, path in enumerate(paths):
            present, value = read_json_text(row._mapping[f"v{i}"], LISTED_VALUE_CHARS)
            if present is None:
                omitted.append(path)
            elif present:
                config[path] = value
        listed.append(
            Listed(
                id=row.id,
                project_id=project_id,
                name=row.name,
                status=row.status,
                created_at=row.created_at,
                ended_at=row.ended_at,
                tags=tags[row.id],
                config=config,
                omitted=tuple(omitted),
                metrics={key: lasts[row.id][key] for key in keys if key in lasts[row.id]},
            )
        )
    return listed


def ids_with_prefix(
    conn: Connection, prefix: str, project_ids: Sequence[int] | None, limit: int
) -> list[str]:
    """Ids of runs that start with ``prefix`` (lowercase hex), in the given projects (all
    when None), sorted; an index range scan on the primary key."""
    upper = prefix + "g"  # every hex id that starts with prefix sorts below prefix + "g"
    query = sa.select(_r.c.id).where(_r.c.id >= prefix, _r.c.id < upper, LIVE)
    if project_ids is not None:
        query = query.where(_r.c.project_id.in_(project_ids))
    return list(conn.execute(query.order_by(_r.c.id).limit(limit)).scalars())


def live_among(conn: Connection, run_ids: set[str]) -> set[str]:
    """Those of these runs that exist and are not in the trash."""
    if not run_ids:
        return set()
    query = sa.select(_r.c.id).where(_r.c.id.in_(sorted(run_ids)), LIVE)
    return set(conn.execute(query).scalars())


def activity(conn: Connection, project_ids: list[int]) -> dict[int, Activity]:
    """How many runs each project holds and when its newest one was created (one grouped
    query over the runs' project index): the projects domain's ``ActivityReader``."""
    if not project_ids:
        return {}
    query = (
        sa.select(_r.c.project_id, sa.func.count(), sa.func.max(_r.c.created_at))
        .where(_r.c.project_id.in_(project_ids), LIVE)
        .group_by(_r.c.project_id)
    )
    return {pid: Activity(count, last) for pid, count, last in conn.execute(query)}
