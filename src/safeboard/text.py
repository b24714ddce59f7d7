"""Text that every database can store (S17): no NUL character, no lone surrogate.

PostgreSQL refuses NUL in ``text`` and ``jsonb`` ("invalid byte sequence", "unsupported
Unicode escape sequence"), and a lone surrogate (``"\\ud800"`` in JSON) cannot be encoded
as UTF-8 for either database. Python's JSON parser accepts both, so every JSON request
body is checked here once, before any route reads it (``api.guards.JsonTextMiddleware``),
instead of each field of each schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["body_problem", "document_problem", "text_problem"]

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# What a body must hold for one of its texts to be unstorable: the escape of NUL or of a
# surrogate, or the character itself (a body decoded with "surrogatepass", as json.loads
# decodes bytes, keeps the encoded surrogates of invalid UTF-8). Checked over the whole
# body at C speed; only a body that matches is parsed and walked.
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])|[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "holds a NUL character" if found.group() == "\x00" else "holds a lone surrogate"


def document_problem(document: Any, where: str = "body") -> str | None:
    """The first unstorable text (value or key) in a parsed JSON document, as
    ``"<where>.<path>: <problem>"``, or None. The offending text itself is never quoted."""
    stack: list[tuple[str, Any]] = [(where, document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return f"{path}: text {problem}"
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem:
                    return f"{path}: a key {problem}"
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def body_problem(body: bytes) -> str | None:
    """Why a JSON request body holds unstorable text, or None. A body that is not JSON at
    all is not this check's business: the route's own parser refuses it."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return None
    if _SUSPECT.search(text) is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document_problem(document)
