"""The one query behind every list of a project's runs (the dashboard's table, the API's
list, ``safeboard runs list``): filtered by the search language, sorted by any column
(name, status, times, a param, a tag or a metric's last value), a page at a time, each row
carrying the config values, tags and metric values asked for.

Pages are keyset-paginated, so the 200th page of 10,000 runs costs what the first does:
the cursor holds the sort value and id of the last row shown. Runs without a value for
the sort column come last in either direction.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection

from safeboard.errors import BadRequest
from safeboard.ids import is_id
from safeboard.metrics.queries import keys_logged
from safeboard.runs import repository as runs
from safeboard.runs.models import RunRow, RunTagRow
from safeboard.runs.projection import PARAM_SAMPLE, param_keys, param_path
from safeboard.runs.repository import Listed
from safeboard.runs.search import RunResolver, run_filter

__all__ = [
    "PLAIN_SORTS",
    "SORT_HELP",
    "ColumnKeys",
    "RunQuery",
    "RunTable",
    "column_keys",
    "split_columns",
    "table_page",
]

_r = cast(sa.Table, RunRow.__table__)
_t = cast(sa.Table, RunTagRow.__table__)

# Plain sort keys: (column, kind of its values, whether it may be NULL).
PLAIN_SORTS: dict[str, tuple[sa.Column[Any], str, bool]] = {
    "created": (_r.c.created_at, "time", False),
    "ended": (_r.c.ended_at, "time", True),
    "name": (_r.c.name, "text", False),
    "status": (_r.c.status, "text", False),
}
SORT_HELP = "created, ended, name, status, params.<path>, tags.<key> or metrics.<key>"
COLUMN_ROOTS = ("params", "tags", "metrics")
MAX_PICKER_KEYS = 500  # tag and metric keys offered by the column picker
_SQLITE_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35)  # WITH ... AS MATERIALIZED


@dataclass(frozen=True)
class RunQuery:
    """What a list asks for: which runs (filter), in which order, from where (cursor), how
    many, and what each row carries besides its name, status and times."""

    filter_text: str | None = None
    sort: str = "created"
    descending: bool = True
    cursor: str | None = None
    limit: int = 50
    config: tuple[str, ...] = ()  # dotted config paths whose values each row carries
    tags: tuple[str, ...] | None = None  # tag keys each row carries; None: all its tags
    metrics: tuple[str, ...] = ()  # metric keys whose last values each row carries
    count: bool = False  # also count the runs that match the filter


@dataclass(frozen=True)
class RunTable:
    rows: list[Listed]
    next_cursor: str | None
    total: int | None  # with RunQuery.count: how many runs match the filter


@dataclass(frozen=True)
class ColumnKeys:
    """What a column picker offers: param paths, tag keys and metric keys."""

    params: list[str]
    tags: list[str]
    metrics: list[str]


def split_columns(columns: tuple[str, ...] | list[str]) -> dict[str, tuple[str, ...]]:
    """``params.<path>``, ``tags.<key>``, ``metrics.<key>`` columns by root, each in the
    order given without repeats; other columns are left out."""
    found: dict[str, list[str]] = {root: [] for root in COLUMN_ROOTS}
    for column in columns:
        root, _, rest = column.partition(".")
        if root in found and rest:
            found[root].append(rest)
    return {root: tuple(dict.fromkeys(keys)) for root, keys in found.items()}


def _unknown_sort(sort: str) -> BadRequest:
    shown = sort if len(sort) <= 60 else sort[:57] + "..."
    return BadRequest(f"unknown sort key {shown!r}: use one of {SORT_HELP}")


@dataclass(frozen=True)
class _Sort:
    expr: ColumnElement[Any]
    kind: str  # of its values: time, number or text (a cursor holds a value of this kind)
    nullable: bool


def _sort_expression(conn: Connection, project_id: int, sort: str) -> _Sort:
    """What a sort key sorts by; BadRequest naming the valid keys for an unknown one."""
    if sort in PLAIN_SORTS:
        return _Sort(*PLAIN_SORTS[sort])
    resolver = RunResolver(conn.dialect.name)
    root, _, rest = sort.partition(".")
    if root == "metrics" and rest:
        return _Sort(resolver.metric_last(rest), "number", nullable=True)
    if root == "tags" and rest:
        return _Sort(resolver.tag(rest), "text", nullable=True)
    if root != "params" or not rest:
        raise _unknown_sort(sort)
    path = param_path(rest, "sort")
    present = resolver.json_value("params", path, "any")
    # Sorted as numbers when the newest run that has this param holds a number.
    sample = conn.execute(
        sa.select(present)
        .where(_r.c.project_id == project_id, present.is_not(None))
        .order_by(_r.c.created_at.desc())
        .limit(1)
    ).scalar()
    if _is_number(sample):
        number = resolver.json_value("params", path, "number")
        return _Sort(sa.type_coerce(number, sa.Float()), "number", nullable=True)
    return _Sort(resolver.json_value("params", path, "string"), "text", nullable=True)


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


def _number(value: float) -> float:
    """A number, infinities included (a diverged run's last value); never NaN, which no
    stored value is (a NaN last value is stored as NULL)."""
    number = float(value)  # OverflowError for an integer past float's range
    if math.isnan(number):
        raise ValueError("not a number")
    return number


def _encodable(text: str) -> str:
    text.encode("utf-8")  # UnicodeEncodeError for a lone surrogate such as "\ud800"
    return text


_READ_CURSOR_VALUE: dict[str, Callable[[Any], Any]] = {
    "time": _aware_time,
    "number": _number,
    "text": lambda value: _encodable(str(value)),
    "null": lambda _: None,
}


def _decode_cursor(cursor: str, expected: str, dialect: str) -> tuple[str, Any, str]:
    """(kind, value, run id) of a cursor whose value is of the ``expected`` kind or null."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, run_id = json.loads(raw)
        read = _READ_CURSOR_VALUE[kind] if kind in (expected, "null") else None
        if read is not None and is_id(run_id):
            found = read(value)
            # PostgreSQL's text holds no NUL character, so no value there has one.
            if not (dialect == "postgresql" and kind == "text" and "\x00" in found):
                return kind, found, run_id
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise BadRequest("cursor: not one this page made") from exc
    raise BadRequest("cursor: not one this page made (made for another sort order?)")


def _after(
    sort: _Sort,
    cursor: str,
    *,
    expr: ColumnElement[Any],
    run_id_column: ColumnElement[str],
    descending: bool,
    dialect: str,
) -> ColumnElement[bool]:
    kind, value, run_id = _decode_cursor(cursor, sort.kind, dialect)

    def beyond(a: Any, b: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], a < b if descending else a > b)

    if not sort.nullable:  # a row value comparison, which an index can answer
        if kind == "null":
            raise BadRequest("cursor: not one this page made (made for another sort order?)")
        return beyond(sa.tuple_(expr, run_id_column), sa.tuple_(value, run_id))
    if kind == "null":
        return sa.and_(expr.is_(None), beyond(run_id_column, run_id))
    return sa.or_(
        sa.and_(
            expr.is_not(None),
            sa.or_(beyond(expr, value), sa.and_(expr == value, beyond(run_id_column, run_id))),
        ),
        expr.is_(None),
    )


def _computed(where: list[ColumnElement[bool]], sort: _Sort) -> tuple[Any, ColumnElement[Any]]:
    """(run ids, sort values) to sort and page: the runs table itself for a column of it;
    for a value computed per run (a metric's last value, a param, a tag), a materialized
    CTE that computes it once per run. Inline, the ORDER BY, its NULLs-last case and a
    cursor's comparisons each computed it again: a page after the first of 10,000 runs
    sorted by a metric took 2-3 times the first."""
    if isinstance(sort.expr, sa.Column):
        return _r.c.id, sort.expr
    values = sa.select(_r.c.id.label("id"), sort.expr.label("value")).where(*where).cte("sorted")
    values = values.prefix_with("MATERIALIZED", dialect="postgresql")
    if _SQLITE_MATERIALIZED:
        values = values.prefix_with("MATERIALIZED", dialect="sqlite")
    return values.c.id, values.c.value


def table_page(conn: Connection, project_id: int, query: RunQuery) -> RunTable:
    """A page of the project's runs as ``query`` asks; BadRequest for an unknown sort key,
    a filter or a cursor that cannot be read."""
    where = [_r.c.project_id == project_id, runs.LIVE]  # the trash is not listed
    condition = run_filter(query.filter_text, conn.dialect.name)
    if condition is not None:
        where.append(condition)
    sort = _sort_expression(conn, project_id, query.sort)
    run_id, expr = _computed(where, sort)
    # First the page's ids in order (the database sorts ids and sort values only), then
    # what the page shows of those runs alone: a config value is read for the rows shown,
    # never for every row that was sorted.
    if run_id is _r.c.id:
        select = sa.select(_r.c.id, expr.label("sort_value")).where(*where)
    else:
        select = sa.select(run_id.label("id"), expr.label("sort_value"))
    if query.cursor:
        after = _after(sort, query.cursor, expr=expr, run_id_column=run_id,
                       descending=query.descending, dialect=conn.dialect.name)  # fmt: skip
        select = select.where(after)
    direction = sa.desc if query.descending else sa.asc
    order = [direction(expr), direction(run_id)]
    if sort.nullable:  # runs without a value last, either way
        order.insert(0, sa.case((expr.is_(None), 1), else_=0))
    found = conn.execute(select.order_by(*order).limit(query.limit + 1)).all()
    page = found[: query.limit]
    next_cursor = None
    if len(found) > query.limit and page:
        next_cursor = _encode_cursor(page[-1].sort_value, page[-1].id)
    total = None
    if query.count:
        count = sa.select(sa.func.count()).select_from(_r).where(*where)
        total = int(conn.execute(count).scalar_one())
    rows = runs.listed(
        conn,
        project_id,
        [row.id for row in page],
        config_paths=query.config,
        tag_keys=query.tags,
        metric_keys=query.metrics,
    )
    return RunTable(rows, next_cursor, total)


def column_keys(conn: Connection, project_id: int) -> ColumnKeys:
    """What the column picker offers: param paths, tag keys and metric keys of the
    project's newest runs (PARAM_SAMPLE of them), each list bounded: the cost of the page
    does not grow with the project."""
    recent = (
        sa.select(_r.c.id)
        .where(_r.c.project_id == project_id, runs.LIVE)
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
    metric_keys: list[str] = list(conn.execute(keys_logged(recent, MAX_PICKER_KEYS)).scalars())
    return ColumnKeys(param_keys(conn, project_id), list(tag_keys), metric_keys)
