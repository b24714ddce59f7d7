"""Parts of runs' configs, picked in SQL: the JSON text of the value at a path, cut to a
bounded number of characters, and the param paths of a project's recent runs. What a list
or a table reads of a config is then bounded however large the configs are (S17, P4)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from safeboard.documents import MAX_DEPTH, MAX_DOCUMENT_BYTES, document_problem
from safeboard.errors import BadRequest

__all__ = ["is_param_path", "json_text", "param_keys", "param_path", "read_json_text"]

# SQLite's -> operator (3.38) reads a document once; older versions ask twice.
_SQLITE_ARROW = sqlite3.sqlite_version_info >= (3, 38)
# The param paths the column picker offers come from at most this many recent runs, ...
PARAM_SAMPLE = 200
# ... as long as the configs read so far are smaller than this (200 configs of 5 KB, or
# 4 at the bounds), each config read only when at most this long (documents within the
# bounds always are); at most MAX_PARAM_KEYS paths are offered.
SAMPLE_BUDGET = 4 * MAX_DOCUMENT_BYTES
SAMPLED_CHARS = 4 * MAX_DOCUMENT_BYTES
MAX_PARAM_KEYS = 500


def param_path(text: str, where: str) -> list[str]:
    """A dotted config path as its keys; BadRequest for an empty key or one with quotes,
    backslashes or unprintable characters (which JSON paths cannot hold safely)."""
    path = text.split(".")
    if any(
        not part or any(ch in part for ch in "\"'\\") or not part.isprintable() for part in path
    ):
        raise BadRequest(f"{where}: a param path is keys joined by dots, without quotes")
    return path


def json_text(
    column: ColumnElement[Any], path: Sequence[str], dialect: str, limit: int
) -> ColumnElement[str | None]:
    """The JSON text of the value at ``path`` (the whole document for an empty path), at
    most ``limit`` + 1 characters of it (longer means "too long"); NULL when absent."""
    if dialect == "sqlite":
        document = sa.type_coerce(column, sa.Text())
        if not path:
            text: ColumnElement[Any] = document
        else:
            where = sa.bindparam(None, "$" + "".join(f'."{key}"' for key in path), sa.Text())
            if _SQLITE_ARROW:
                text = document.op("->", return_type=sa.Text())(where)
            else:
                found = sa.func.json_type(document, where).is_not(None)
                quoted = sa.func.json_quote(sa.func.json_extract(document, where))
                text = sa.case((found, quoted), else_=sa.null())
    elif dialect == "postgresql":
        value = column
        if path:
            keys = sa.bindparam(
                None, list(path), cast("sa.types.TypeEngine[list[str]]", ARRAY(sa.Text()))
            )
            value = column.op("#>", return_type=JSONB())(keys)
        text = sa.cast(value, sa.Text())
    else:
        raise ValueError(f"json_text supports sqlite and postgresql, not {dialect!r}")
    return sa.type_coerce(sa.func.substr(text, 1, limit + 1), sa.Text())


def read_json_text(text: str | None, limit: int) -> tuple[bool | None, Any]:
    """(True, value) for a value read by json_text; (False, None) when it was absent;
    (None, None) when it is too long to show, or beyond the bounds (stored before them)."""
    if text is None:
        return False, None
    if len(text) > limit:
        return None, None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, None
    if document_problem({"value": value}) is not None:
        return None, None
    return True, value


# Recent runs, newest first, while the configs read so far total less than the budget
# (the newest is always read when it is within SAMPLED_CHARS).
_SQLITE_KEYS = sa.text(
    """
    SELECT DISTINCT substr(t.fullkey, 3) AS path
    FROM (
        SELECT runs.params FROM runs JOIN (
            SELECT id, size, sum(size) OVER (ORDER BY created_at DESC, id DESC) - size AS before
            FROM (
                SELECT id, created_at, length(CAST(params AS BLOB)) AS size
                FROM runs WHERE project_id = :project
                ORDER BY created_at DESC, id DESC LIMIT :sample
            )
        ) AS sized ON runs.id = sized.id
        WHERE sized.before < :budget AND sized.size <= :chars AND json_valid(runs.params)
    ) AS r, json_tree(r.params) AS t
    WHERE t.type != 'object' AND t.fullkey NOT LIKE '%[%' AND t.fullkey NOT LIKE '%"%'
        AND t.fullkey != '$'
    ORDER BY path LIMIT :keys
    """
)
_POSTGRES_KEYS = sa.text(
    """
    WITH RECURSIVE recent AS (
        SELECT runs.params FROM runs JOIN (
            SELECT id, size, sum(size) OVER (ORDER BY created_at DESC, id DESC) - size AS before
            FROM (
                SELECT id, created_at, pg_column_size(params) AS size
                FROM runs WHERE project_id = :project
                ORDER BY created_at DESC, id DESC LIMIT :sample
            ) AS newest
        ) AS sized ON runs.id = sized.id
        WHERE sized.before < :budget AND sized.size <= :chars
    ), tree(path, value, depth) AS (
        SELECT e.key, e.value, 1 FROM recent, jsonb_each(
            CASE WHEN jsonb_typeof(recent.params) = 'object' THEN recent.params
            ELSE '{}'::jsonb END) AS e
        UNION ALL
        SELECT tree.path || '.' || e.key, e.value, tree.depth + 1 FROM tree, jsonb_each(
            CASE WHEN jsonb_typeof(tree.value) = 'object' THEN tree.value
            ELSE '{}'::jsonb END) AS e
        WHERE tree.depth < :depth
    )
    SELECT DISTINCT path FROM tree WHERE jsonb_typeof(value) != 'object'
    ORDER BY path LIMIT :keys
    """
)


def param_keys(conn: Connection, project_id: int) -> list[str]:
    """Dotted paths of the values in the configs of the project's recent runs (what
    flattening them would give), found by the database: no config is read here."""
    query = _SQLITE_KEYS if conn.dialect.name == "sqlite" else _POSTGRES_KEYS
    found = conn.execute(
        query,
        {
            "project": project_id,
            "sample": PARAM_SAMPLE,
            "chars": SAMPLED_CHARS,
            "budget": SAMPLE_BUDGET,
            "depth": MAX_DEPTH,
            "keys": MAX_PARAM_KEYS,
        },
    ).scalars()
    return [path for path in found if is_param_path(path)]


def is_param_path(path: str) -> bool:
    """Whether ``path`` is a dotted config path that param_path accepts."""
    try:
        param_path(path, "path")
    except BadRequest:
        return False
    return True
