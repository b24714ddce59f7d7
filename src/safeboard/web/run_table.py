"""The query behind a project's runs table: filtered (the search language), sorted by any
column (name, status, times, a param, a tag or a metric's last value), a page at a time.

Pages are keyset-paginated, so the 200th page of 10,000 runs costs what the first does:
the cursor holds the sort value and id of the last row shown. Runs without a value for
the sort column come last in either direction.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection

from safeboard.errors import BadRequest
from safeboard.ids import is_id
from safeboard.metrics.models import MetricSummaryRow
from safeboard.runs.filter_sql import json_path_expr
from safeboard.runs.models import RunRow, RunTagRow
from safeboard.runs.search import run_filter

__all__ = ["TablePage", "TableQuery", "TableRow", "column_keys", "flatten", "load_page"]

_r = cast(sa.Table, RunRow.__table__)
_t = cast(sa.Table, RunTagRow.__table__)
_s = cast(sa.Table, MetricSummaryRow.__table__)

PLAIN_SORTS = {
    "created": _r.c.created_at,
    "ended": _r.c.ended_at,
    "name": _r.c.name,
    "status": _r.c.status,
}
PARAM_SAMPLE = 200  # recent runs whose params name the picker's param columns


@dataclass(frozen=True)
class TableQuery:
    filter_text: str | None = None
    sort: str = "created"
    descending: bool = True
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class TableRow:
    id: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    params: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TablePage:
    rows: list[TableRow]
    next_cursor: str | None
    total: int


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted paths: {"opt": {"lr": 0.1}} -> {"opt.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _sort_expression(
    conn: Connection, project_id: int, sort: str
) -> tuple[ColumnElement[Any], str]:
    """The expression to sort by, and the kind of its values (time, number or text): a
    cursor must hold a value of that kind."""
    if sort in PLAIN_SORTS:
        return PLAIN_SORTS[sort], "time" if sort in ("created", "ended") else "text"
    root, _, rest = sort.partition(".")
    if root == "metrics" and rest:
        last = sa.select(_s.c.last_value).where(_s.c.run_id == _r.c.id, _s.c.key == rest)
        return last.scalar_subquery(), "number"
    if root == "tags" and rest:
        tag = sa.select(_t.c.value).where(_t.c.run_id == _r.c.id, _t.c.key == rest)
        return tag.scalar_subquery(), "text"
    if root == "params" and rest:
        path = rest.split(".")
        if any(
            not part or any(ch in part for ch in "\"'\\") or not part.isprintable() for part in path
        ):
            raise BadRequest("sort: a param path is keys joined by dots, without quotes")
        dialect = conn.dialect.name
        # Sorted as numbers when the newest run that has this param holds a number.
        sample = conn.execute(
            sa.select(json_path_expr(_r.c.params, path, dialect, "any"))
            .where(_r.c.project_id == project_id)
            .where(json_path_expr(_r.c.params, path, dialect, "any").is_not(None))
            .order_by(_r.c.created_at.desc())
            .limit(1)
        ).scalar()
        if _is_number(sample):
            number = json_path_expr(_r.c.params, path, dialect, "number")
            return sa.type_coerce(number, sa.Float()), "number"
        return json_path_expr(_r.c.params, path, dialect, "string"), "text"
    raise BadRequest(
        "sort: created, ended, name, status, params.<path>, tags.<key> or metrics.<key>"
    )


def _is_number(value: object) -> bool:
    if isinstance(value, str):  # PostgreSQL's "any" is the text of the value
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _encode_cursor(value: object, run_id: str) -> str:
    if value is None:
        tagged: list[Any] = ["null", None]
    elif isinstance(value, datetime):
        tagged = ["time", value.isoformat()]
    elif isinstance(value, int | float | Decimal):
        tagged = ["number", float(value)]
    else:
        tagged = ["text", str(value)]
    raw = json.dumps([*tagged, run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _aware_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a time without zone")
    return moment.astimezone(UTC)  # OverflowError at the ends of the calendar


def _finite(value: float) -> float:
    number = float(value)  # OverflowError for an integer past float's range
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


_READ_CURSOR_VALUE: dict[str, Callable[[Any], Any]] = {
    "time": _aware_time,
    "number": _finite,
    "text": lambda value: _encodable(str(value)),
    "null": lambda _: None,
}


def _encodable(text: str) -> str:
    text.encode("utf-8")  # UnicodeEncodeError for a lone surrogate such as "\ud800"
    return text


def _decode_cursor(cursor: str, expected: str) -> tuple[str, Any, str]:
    """(kind, value, run id) of a cursor whose value is of the ``expected`` kind or null."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, run_id = json.loads(raw)
        read = _READ_CURSOR_VALUE[kind] if kind in (expected, "null") else None
        if read is not None and is_id(run_id):
            return kind, read(value), run_id
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise BadRequest("cursor: not one this page made") from exc
    raise BadRequest("cursor: not one this page made (made for another sort order?)")


def _after(
    expr: ColumnElement[Any], kind_of_sort: str, cursor: str, descending: bool
) -> ColumnElement[bool]:
    kind, value, run_id = _decode_cursor(cursor, kind_of_sort)

    def beyond(a: Any, b: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], a < b if descending else a > b)

    if kind == "null":
        return sa.and_(expr.is_(None), beyond(_r.c.id, run_id))
    return sa.or_(
        sa.and_(
            expr.is_not(None),
            sa.or_(beyond(expr, value), sa.and_(expr == value, beyond(_r.c.id, run_id))),
        ),
        expr.is_(None),
    )


def load_page(conn: Connection, project_id: int, query: TableQuery) -> TablePage:
    where = [_r.c.project_id == project_id]
    condition = run_filter(query.filter_text, conn.dialect.name)
    if condition is not None:
        where.append(condition)
    total = conn.execute(sa.select(sa.func.count()).select_from(_r).where(*where)).scalar_one()
    expr, kind = _sort_expression(conn, project_id, query.sort)
    select = sa.select(_r, expr.label("sort_value")).where(*where)
    if query.cursor:
        select = select.where(_after(expr, kind, query.cursor, query.descending))
    direction = sa.desc if query.descending else sa.asc
    select = select.order_by(
        sa.case((expr.is_(None), 1), else_=0), direction(expr), direction(_r.c.id)
    ).limit(query.limit + 1)
    found = conn.execute(select).all()
    shown = found[: query.limit]
    next_cursor = None
    if len(found) > query.limit and shown:
        next_cursor = _encode_cursor(shown[-1].sort_value, shown[-1].id)
    rows = _rows(conn, shown)
    return TablePage(rows, next_cursor, int(total))


def _rows(conn: Connection, found: Sequence[sa.Row[Any]]) -> list[TableRow]:
    ids = [row.id for row in found]
    tags: dict[str, dict[str, str]] = {run_id: {} for run_id in ids}
    metrics: dict[str, dict[str, float | None]] = {run_id: {} for run_id in ids}
    if ids:
        for tag in conn.execute(sa.select(_t).where(_t.c.run_id.in_(ids))):
            tags[tag.run_id][tag.key] = tag.value
        summaries = sa.select(_s.c.run_id, _s.c.key, _s.c.last_value).where(_s.c.run_id.in_(ids))
        for summary in conn.execute(summaries):
            metrics[summary.run_id][summary.key] = summary.last_value
    return [
        TableRow(
            id=row.id,
            name=row.name,
            status=row.status,
            created_at=row.created_at,
            ended_at=row.ended_at,
            params=row.params,
            tags=tags[row.id],
            metrics=metrics[row.id],
        )
        for row in found
    ]


def column_keys(conn: Connection, project_id: int) -> tuple[list[str], list[str], list[str]]:
    """What the column picker offers: param paths (from recent runs), tag keys and metric
    keys of the project."""
    recent = conn.execute(
        sa.select(_r.c.params)
        .where(_r.c.project_id == project_id)
        .order_by(_r.c.created_at.desc())
        .limit(PARAM_SAMPLE)
    ).scalars()
    params: set[str] = set()
    for document in recent:
        params.update(flatten(document or {}))
    in_project = sa.select(_r.c.id).where(_r.c.project_id == project_id).scalar_subquery()
    tag_keys = conn.execute(
        sa.select(_t.c.key).where(_t.c.run_id.in_(in_project)).distinct().order_by(_t.c.key)
    ).scalars()
    metric_keys = conn.execute(
        sa.select(_s.c.key).where(_s.c.run_id.in_(in_project)).distinct().order_by(_s.c.key)
    ).scalars()
    return sorted(params), list(tag_keys), list(metric_keys)
