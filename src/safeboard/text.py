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
from typing import Any, NamedTuple

__all__ = ["body_problem", "document_problem", "text_problem"]

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# What a UTF-8 body must hold for one of its texts to be unstorable: the escape of NUL or of
# a surrogate, or a surrogate encoded in its bytes (json.loads decodes bytes with
# "surrogatepass", so these become lone surrogates; a raw NUL is not JSON at all). Both
# patterns start with a literal, which the regex engine looks for at memchr speed: a clean
# 15 MiB metric batch is scanned in milliseconds. Only a body that matches is parsed and
# walked. Other encodings (UTF-16, UTF-32: rare) are decoded and scanned as text.
_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")
_SUSPECT_TEXT = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])|[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "holds a NUL character" if found.group() == "\x00" else "holds a lone surrogate"


def _text_at(path: str, text: str, what: str) -> str | None:
    problem = text_problem(text)
    return f"{path}: {what} {problem}" if problem else None


def document_problem(document: Any, where: str = "body") -> str | None:
    """The first unstorable text (value or key) in a parsed JSON document, as
    ``"<where>.<path>: <problem>"``, or None. The offending text itself is never quoted.
    Paths are spelled only for the problem found: each container waiting on the stack holds
    one link to its parent, so a body of millions of nested or sibling containers costs
    memory in proportion to its size, not to size times depth."""
    if isinstance(document, str):
        return _text_at(where, document, "text")
    stack: list[tuple[Any, _Step | None]] = [(document, None)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem:
                    return f"{_spell(where, at)}: a key {problem}"
                if isinstance(item, str) and (problem := text_problem(item)):
                    return f"{_spell(where, _Step(at, f'.{key}'))}: text {problem}"
                if isinstance(item, dict | list):
                    stack.append((item, _Step(at, f".{key}")))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str) and (problem := text_problem(item)):
                    return f"{_spell(where, _Step(at, f'[{index}]'))}: text {problem}"
                if isinstance(item, dict | list):
                    stack.append((item, _Step(at, index)))
    return None


class _Step(NamedTuple):
    """One step of a path: the step before it, and a key (``".name"``) or a list index."""

    parent: _Step | None
    step: str | int


def _spell(where: str, at: _Step | None) -> str:
    steps: list[str] = []
    while at is not None:
        steps.append(f"[{at.step}]" if isinstance(at.step, int) else at.step)
        at = at.parent
    return where + "".join(reversed(steps))


def body_problem(body: bytes) -> str | None:
    """Why a JSON request body holds unstorable text, or None. A body that is not JSON at
    all is not this check's business: the route's own parser refuses it."""
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        if _ESCAPE_BYTES.search(body) is None and _SURROGATE_BYTES.search(body) is None:
            return None
    else:
        try:
            text = body.decode(encoding, "surrogatepass")
        except (UnicodeDecodeError, LookupError):
            return None
        if _SUSPECT_TEXT.search(text) is None:
            return None
    try:
        document = json.loads(body)  # decodes as above, with "surrogatepass"
    except (ValueError, UnicodeDecodeError, RecursionError):  # the route's parser refuses it
        return None
    return document_problem(document)
