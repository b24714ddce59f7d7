"""How a refused request reads: plain words for what pydantic found, the same in the API's
JSON errors and the dashboard's pages.

Each error keeps its place (``body.name``, ``path.task_id``: what a program reads) and
gets a sentence a person reads instead of pydantic's (``String should match pattern
'^[A-Za-z0-9]...'``). Patterns are described by what they allow, so the words live
next to the patterns themselves: a schema that adds one adds its words here. The input
itself is never echoed (it may be a secret)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from safeboard.ids import ID_PATTERN

__all__ = ["NAME_PATTERN", "RUN_ID_PATTERN", "describe", "name_problem", "where"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # projects, and runs' project names
RUN_ID_PATTERN = f"^{ID_PATTERN}$"
_NAME = re.compile(NAME_PATTERN)  # fullmatch: "$" never takes a final newline

_PATTERNS = {
    NAME_PATTERN: "1 to 100 letters, digits, dots, dashes or underscores, starting with a "
    "letter or digit",
    RUN_ID_PATTERN: "an id of 32 hexadecimal digits (0-9, a-f)",
}
_WHOLE = "must be a whole number"
_BY_TYPE = {
    "int_parsing": _WHOLE,
    "int_type": _WHOLE,
    "int_from_float": _WHOLE,
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "missing": "is required",
    "extra_forbidden": "is not a field this request takes",
    "json_invalid": "is not valid JSON",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_short": ("min_length", "must be at least {} characters long"),
    "string_too_long": ("max_length", "must be at most {} characters long"),
    "too_short": ("min_length", "must hold at least {} items"),
    "too_long": ("max_length", "must hold at most {} items"),
}


def name_problem(name: str) -> str | None:
    """What is wrong with a project's name, in the words a refused one gets (``must be 1
    to 100 letters, ...``), or None. The client checks a name it puts in a URL path: sent,
    ``a/b`` or ``..`` would reach another route or none, and come back as "no such
    resource"."""
    if _NAME.fullmatch(name):
        return None
    return f"must be {_PATTERNS[NAME_PATTERN]}"


def where(error: Mapping[str, Any]) -> str:
    """The error's place, dotted: ``body.name``, ``path.task_id``, ``query.limit``."""
    return ".".join(str(part) for part in error.get("loc", ())) or "request"


def _what(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        allowed = _PATTERNS.get(str(context.get("pattern", "")))
        if allowed is not None:
            return f"must be {allowed}"
    if kind in ("enum", "literal_error") and "expected" in context:
        return f"must be one of {context['expected']}"
    if kind in _BOUNDS and _BOUNDS[kind][0] in context:
        key, words = _BOUNDS[kind]
        return words.format(context[key])
    return _BY_TYPE.get(kind) or str(error.get("msg", "invalid"))


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """``body.name: must be 1 to 100 letters, ...`` for the first error, and how many more."""
    if not errors:
        return "invalid request"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where(first)}: {_what(first)}{more}"
