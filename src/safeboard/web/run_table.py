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
from safeboard.runs import repository as runs
from safeboard.runs.filter_sql import json_path_expr
from safeboard.runs.models import RunRow, RunTagRow
from safeboard.runs.projection import (
    PARAM_SAMPLE,
    json_text,
    param_keys,
    param_path,
    read_json_text,
)
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
CELL_CHARS = 1_000  # a param cell shows values up to this long as JSON; longer: TOO_LONG
TOO_LONG = "(too long to show)"
MAX_PICKER_KEYS = 500  # tag and metric keys offered by the column picker


@dataclass(frozen=True)
class TableQuery:
    filter_text: str | None = None
    sort: str = "created"
    descending: bool = True
    cursor: str | None = None
    limit: int = 50
    columns: tuple[str, ...] = ()  # params.<path>, tags.<key>, metrics.<key> shown


@dataclass(frozen=True)
class TableRow:
    id: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    params: dict[str, Any]  # dotted path of a shown column -> value (TOO_LONG if so)
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
        path = param_path(rest, "sort")
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
    shown = sort if len(sort) <= 60 else sort[:57] + "..."
    raise BadRequest(
        f"unknown sort key {shown!r}: use one of created, ended, name, status, "
        "params.<path>, tags.<key> or metrics.<key>"
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
    # First the page's ids in order (the database sorts ids and sort values only), then
    # what the page shows of those runs alone: a config value is read for the rows shown,
    # never for every row that was sorted.
    select = sa.select(_r.c.id, expr.label("sort_value")).where(*where)
    if query.cursor:
        select = select.where(_after(expr, kind, query.cursor, query.descending))
    direction = sa.desc if query.descending else sa.asc
    select = select.order_by(
        sa.case((expr.is_(None), 1), else_=0), direction(expr), direction(_r.c.id)
    ).limit(query.limit + 1)
    found = conn.execute(select).all()
    page = found[: query.limit]
    next_cursor = None
    if len(found) > query.limit and page:
        next_cursor = _encode_cursor(page[-1].sort_value, page[-1].id)
    rows = _rows(conn, [row.id for row in page], query.columns)
    return TablePage(rows, next_cursor, int(total))


def _plain_path(path: str) -> bool:
    try:
        param_path(path, "col")
    except BadRequest:
        return False
    return True


def _cells(row: Any, paths: list[str]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for i, path in enumerate(paths):
        found, value = read_json_text(row._mapping[f"v{i}"], CELL_CHARS)
        if found is None:
            cells[path] = TOO_LONG
        elif found:
            cells[path] = value
    return cells


def _rows(conn: Connection, ids: list[str], columns: Sequence[str]) -> list[TableRow]:
    """The runs of ``ids`` in that order, with the values of the chosen columns only."""
    chosen = {root: [c.partition(".")[2] for c in columns if c.startswith(f"{root}.")]
              for root in ("params", "tags", "metrics")}  # fmt: skip
    paths = [p for p in dict.fromkeys(chosen["params"]) if p and _plain_path(p)]
    values = [
        json_text(_r.c.params, p.split("."), conn.dialect.name, CELL_CHARS).label(f"v{i}")
        for i, p in enumerate(paths)
    ]
    shown = [_r.c[name] for name in ("id", "name", "status", "created_at", "ended_at")]
    found = {
        row.id: row for row in conn.execute(sa.select(*shown, *values).where(_r.c.id.in_(ids)))
    }
    tags = runs.tags_of(conn, ids, keys=chosen["tags"])
    metrics: dict[str, dict[str, float | None]] = {run_id: {} for run_id in ids}
    if ids and chosen["metrics"]:
        summaries = sa.select(_s.c.run_id, _s.c.key, _s.c.last_value).where(
            _s.c.run_id.in_(ids), _s.c.key.in_(chosen["metrics"])
        )
        for summary in conn.execute(summaries):
            metrics[summary.run_id][summary.key] = summary.last_value
    return [
        TableRow(
            id=run_id,
            name=found[run_id].name,
            status=found[run_id].status,
            created_at=found[run_id].created_at,
            ended_at=found[run_id].ended_at,
            params=_cells(found[run_id], paths),
            tags=tags[run_id],
            metrics=metrics[run_id],
        )
        for run_id in ids
        if run_id in found
    ]


def column_keys(conn: Connection, project_id: int) -> tuple[list[str], list[str], list[str]]:
    """What the column picker offers: param paths, tag keys and metric keys of the
    project's newest runs (PARAM_SAMPLE of them), each list bounded: the cost of the page
    does not grow with the project."""
    recent = (
        sa.select(_r.c.id)
        .where(_r.c.project_id == project_id)
        .order_by(_r.c.created_at.desc(), _r.c.id.desc())
        .limit(PARAM_SAMPLE)
        .scalar_subquery()
    )
    tag_keys = conn.execute(
        sa.select(_t.c.key)
        .where(_t.c.run_id.in_(recent))
        .distinct()
        .order_by(_t.c.key)
        .limit(MAX_PICKER_KEYS)
    ).scalars()
    metric_keys = conn.execute(
        sa.select(_s.c.key)
        .where(_s.c.run_id.in_(recent))
        .distinct()
        .order_by(_s.c.key)
        .limit(MAX_PICKER_KEYS)
    ).scalars()
    return param_keys(conn, project_id), list(tag_keys), list(metric_keys)
