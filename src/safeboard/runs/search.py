"""The run-search resolver: maps the filter language's fields onto the runs tables, for
SQLite and PostgreSQL (see filters.py for the language, filter_sql.py for the compiler)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement

from safeboard.metrics.queries import last_value
from safeboard.runs.filter_sql import (
    JsonKind,
    JsonRoot,
    PlainField,
    compile_filter,
    json_path_expr,
)
from safeboard.runs.filters import parse_filter
from safeboard.runs.models import RUN_STATUSES, RunRow, RunTagRow

__all__ = ["RunResolver", "run_filter"]

_r = cast(sa.Table, RunRow.__table__)
_t = cast(sa.Table, RunTagRow.__table__)

_PLAIN: dict[str, Any] = {
    # The enum type makes `status = done` a 400 naming the statuses (no SQL change).
    "status": sa.type_coerce(_r.c.status, sa.Enum(*RUN_STATUSES, native_enum=False)),
    "name": _r.c.name,
    "created": _r.c.created_at,
    "ended": _r.c.ended_at,
    "id": _r.c.id,
}


class RunResolver:
    def __init__(self, dialect_name: str) -> None:
        self.dialect = dialect_name

    def column(self, name: PlainField) -> ColumnElement[Any]:
        column: ColumnElement[Any] = _PLAIN[name]
        return column

    def json_value(self, root: JsonRoot, path: Sequence[str], kind: JsonKind) -> ColumnElement[Any]:
        return json_path_expr(_r.c[root], path, self.dialect, kind)

    def metric_last(self, key: str) -> ColumnElement[float]:
        return last_value(_r.c.id, key)

    def tag(self, key: str) -> ColumnElement[str]:
        return (
            sa.select(_t.c.value).where(_t.c.run_id == _r.c.id, _t.c.key == key).scalar_subquery()
        )


def run_filter(text: str | None, dialect_name: str) -> ColumnElement[bool] | None:
    """The WHERE clause for a filter text (None for no filter); BadRequest when invalid."""
    if text is None or not text.strip():
        return None
    return compile_filter(parse_filter(text), RunResolver(dialect_name))
