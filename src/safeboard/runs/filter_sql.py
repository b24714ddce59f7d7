"""Compile a parsed run filter into a SQLAlchemy condition that holds bound parameters only.

The compiler knows no table. A :class:`FilterResolver`, written by the runs repository,
gives one SQL expression per field (a column, a correlated subquery, a JSON extraction),
and the compiler combines them with the filter's values as bound parameters; no value and
no key is ever formatted into SQL. :func:`json_path_expr` extracts typed JSON values the
same way on SQLite and PostgreSQL, for resolvers to reuse.

What a filter means:

* A comparison is true only when the field is present and holds a value of the compared
  kind, for ``!=`` too: ``params.lr > 0.01`` is false for a run without ``lr`` and for one
  whose ``lr`` is ``"high"``. ``not`` is the exact complement, so ``not params.lr = 0.1``
  holds for runs without ``lr`` (a SQL NULL under ``not`` counts as false first).
* params and system: numbers compare numerically (exactly, as NUMERIC, on PostgreSQL),
  strings as text, booleans with ``=``, ``!=`` and ``in`` only; ``in`` may mix kinds.
* metrics take numbers; status, name and tags take text; created and ended take ISO 8601
  text (no zone means UTC); id takes text or an integer, converted to the column's type.
* ``~`` is a case-insensitive substring match on text; ``%``, ``_`` and ``/`` in the
  needle match themselves. ``is null`` holds when the field is absent (a JSON null too).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql.elements import ColumnElement

from safeboard.runs.filters import JSON_ROOTS, And, Comparison, Node, Not, Or, Value, filter_error

__all__ = [
    "FilterResolver",
    "JsonKind",
    "JsonRoot",
    "PlainField",
    "compile_filter",
    "json_path_expr",
    "parse_instant",
]

PlainField = Literal["status", "name", "created", "ended", "id"]
JsonRoot = Literal["params", "system"]
# What json_value returns: the value as NUMERIC, text or boolean when the JSON value at the
# path is of that kind, else NULL; "any" is NULL only when the path is absent or JSON null.
JsonKind = Literal["number", "string", "boolean", "any"]


class FilterResolver(Protocol):
    """Where each field of a run lives; every method returns an expression per run row."""

    def column(self, name: PlainField) -> ColumnElement[Any]:
        """The column of status, name, created (start time), ended (end time) or id."""
        ...

    def json_value(self, root: JsonRoot, path: Sequence[str], kind: JsonKind) -> ColumnElement[Any]:
        """A value inside the run's params (config) or system info; see JsonKind."""
        ...

    def metric_last(self, key: str) -> ColumnElement[float]:
        """The run's last value of metric ``key``, NULL when the run never logged it."""
        ...

    def tag(self, key: str) -> ColumnElement[str]:
        """The value of the run's tag ``key`` ("" for a tag without value), else NULL."""
        ...


def compile_filter(node: Node, resolver: FilterResolver) -> ColumnElement[bool]:
    """The filter as a SQL condition, or BadRequest when a value does not fit its field."""
    if isinstance(node, And):
        return sa.and_(*(compile_filter(operand, resolver) for operand in node.operands))
    if isinstance(node, Or):
        return sa.or_(*(compile_filter(operand, resolver) for operand in node.operands))
    if isinstance(node, Not):
        inner = compile_filter(node.operand, resolver)
        return sa.not_(sa.func.coalesce(inner, sa.false(), type_=sa.Boolean()))
    problem = _misfit(node)
    if problem:
        raise filter_error(node.column, problem)
    return _comparison(node, resolver)


def json_path_expr(
    column: ColumnElement[Any], path: Sequence[str], dialect_name: str, kind: JsonKind
) -> ColumnElement[Any]:
    """The JSON value at ``path`` (object keys) in ``column``, typed as ``kind`` (JsonKind).

    The path is one bound parameter. On SQLite ``column`` holds JSON text and keys must be
    free of quotes and backslashes (the parser ensures it); on PostgreSQL it is JSONB, or
    JSON or text that is cast to JSONB (which a GIN index on the column cannot serve).
    """
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "number": sa.Numeric(),
        "string": sa.Text(),
        "boolean": sa.Boolean(),
    }
    if dialect_name == "sqlite":
        where = sa.bindparam(None, "$" + "".join(f'."{key}"' for key in path), sa.Text())
        value = sa.func.json_extract(column, where)
        if kind == "any":
            return value
        kinds = {"number": ("integer", "real"), "string": ("text",), "boolean": ("true", "false")}
        chosen = sa.func.json_type(column, where).in_(kinds[kind])
        return sa.type_coerce(sa.case((chosen, value), else_=sa.null()), types[kind])
    if dialect_name == "postgresql":
        is_jsonb = isinstance(column.type.dialect_impl(PGDialect()), JSONB)  # type: ignore[no-untyped-call]
        document = column if is_jsonb else sa.cast(column, JSONB)
        keys = sa.bindparam(
            None, list(path), cast("sa.types.TypeEngine[list[str]]", ARRAY(sa.Text()))
        )
        text = document.op("#>>", return_type=sa.Text())(keys)
        if kind == "any":
            return text
        json_kind = sa.func.jsonb_typeof(document.op("#>", return_type=JSONB())(keys))
        return sa.case((json_kind == kind, sa.cast(text, types[kind])), else_=sa.null())
    raise ValueError(f"json_path_expr supports sqlite and postgresql, not {dialect_name!r}")


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or time in UTC (no zone means UTC), or None for other text."""
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:00-05:00 and the like
        return None


_OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _comparison(node: Comparison, resolver: FilterResolver) -> ColumnElement[bool]:
    root, path = node.field.root, node.field.path
    if node.value is None:  # "is null" or "is not null"
        if root in JSON_ROOTS:
            target = resolver.json_value(_json_root(root), path, "any")
        else:
            target = _field(node, resolver)
        return target.is_(None) if node.op == "is null" else target.is_not(None)
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if root not in JSON_ROOTS:
        target = _field(node, resolver)
        if node.op == "~":
            return _as_text(node, target).icontains(values[0], autoescape=True)
        return _apply(node.op, target, [_coerce(node, target, value) for value in values])
    by_kind: dict[JsonKind, list[Any]] = {}
    for value in values:
        if isinstance(value, bool):
            by_kind.setdefault("boolean", []).append(value)
        elif isinstance(value, int | float):
            by_kind.setdefault("number", []).append(_exact_number(value))
        else:
            by_kind.setdefault("string", []).append(value)
    tests = [
        _apply(node.op, resolver.json_value(_json_root(root), path, kind), kind_values)
        for kind, kind_values in by_kind.items()
    ]
    return tests[0] if len(tests) == 1 else sa.or_(*tests)


def _apply(op: str, target: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
    if op == "~":
        return target.icontains(values[0], autoescape=True)
    if op == "in":
        return target.in_(values)
    return _OPERATORS[op](target, values[0])


def _field(node: Comparison, resolver: FilterResolver) -> ColumnElement[Any]:
    root, path = node.field.root, node.field.path
    if root == "tags":
        return resolver.tag(path[0])
    if root == "metrics":
        return resolver.metric_last(path[0])
    return resolver.column(cast("PlainField", root))  # the parser admits only these


def _json_root(root: str) -> JsonRoot:
    return "params" if root == "params" else "system"


def _exact_number(value: int | float) -> ColumnElement[Any]:
    """A JSON number bound exactly: floats as NUMERIC from their shortest decimal form."""
    if isinstance(value, int):
        return sa.bindparam(None, value, sa.BigInteger())
    return sa.bindparam(None, Decimal(repr(value)), sa.Numeric())


def _coerce(node: Comparison, target: ColumnElement[Any], value: Value) -> Any:
    """A value for a plain, tag or metric field, in the Python type of its column."""
    if node.field.root in ("created", "ended"):
        return parse_instant(str(value))
    enums = getattr(target.type, "enums", None)
    if node.op in ("=", "!=", "in") and enums and value not in enums:
        raise filter_error(node.column, f"{node.field.root} is one of {', '.join(enums)}")
    if node.field.root != "id":
        return value
    kind = _python_type(target)
    try:
        return uuid.UUID(str(value)) if kind is uuid.UUID else kind(value)
    except ValueError:
        raise filter_error(node.column, f"not a valid id: {str(value)[:40]!r}") from None


def _as_text(node: Comparison, target: ColumnElement[Any]) -> ColumnElement[Any]:
    if isinstance(target.type, sa.Enum):
        return sa.cast(target, sa.Text())
    if _python_type(target) is not str:
        raise filter_error(node.column, f"'~' matches text, and {node.field.root} is not text")
    return target


def _python_type(target: ColumnElement[Any]) -> Callable[[Any], Any]:
    try:
        kind: Callable[[Any], Any] = target.type.python_type
    except NotImplementedError:
        return str
    return kind if kind in (int, str, uuid.UUID) else str


def _misfit(node: Comparison) -> str | None:
    """Why a value of this comparison does not fit its field, or None when all fit."""
    root, op = node.field.root, node.op
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    for value in values if node.value is not None else ():
        rules = (
            (op == "~" and root in ("metrics", "created", "ended"), f"{root} is not text"),
            (op == "~" and not isinstance(value, str), "'~' takes text: quote the number"),
            (
                isinstance(value, bool) and (root not in JSON_ROOTS or op not in ("=", "!=", "in")),
                "true and false compare only with params or system, by '=', '!=' or 'in'",
            ),
            (root == "metrics" and not isinstance(value, int | float), "metrics take numbers"),
            (
                root in ("status", "name", "tags") and not isinstance(value, str),
                f"{root} holds text: quote the number",
            ),
            (
                root in ("created", "ended") and parse_instant(str(value)) is None,
                f'{root} takes an ISO 8601 time such as "2024-05-01T12:00:00Z"',
            ),
            (root == "id" and isinstance(value, float), "an id is text or an integer"),
        )
        for broken, message in rules:
            if broken:
                return message
    return None
