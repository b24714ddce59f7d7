"""Bounds on what a run carries besides metrics: its config, system information, tags and
notes (S17). The server refuses a document beyond them with 422 before storing anything,
and the SDK refuses it at ``init()`` (or ``log_params``, ``set_tags``, ``set_notes``) with
the same message, rather than spooling what the server would refuse forever.

The bounds are constants, not settings: the SDK checks them on a machine that has no
server settings, and a bound that differed between server and SDK would spool runs that
can never be delivered. They sit far above real configs (a composed Hydra config, a
Hugging Face model config or a DeepSpeed config is 1 to 30 KB, 3 to 8 levels deep) and far
below what hurts: 256 levels broke every list of the project (the JSON encoder's limit),
and 15 MiB configs took a runs list to 1.6 GiB of server memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_KEYS",
    "MAX_KEY_CHARS",
    "MAX_NOTES_CHARS",
    "MAX_STRING_CHARS",
    "MAX_TAGS",
    "MAX_TAGS_CHARS",
    "MAX_TAG_VALUE_CHARS",
    "document_problem",
    "encoded_size",
    "tags_problem",
]

# Levels of nesting of objects and arrays; the document itself is level 1. Real configs
# stay under 10; serializers and parsers fail from about 255 (pydantic) to 1,000 (Python's
# json, SQLite's JSON functions).
MAX_DEPTH = 32
# Object keys in the whole document, at every level. Each is a row on the run page and a
# candidate column of the runs table.
MAX_KEYS = 10_000
# Characters of one object key (the same bound as a metric key).
MAX_KEY_CHARS = 250
# Characters of one string value: room for a prompt template, a command line or a list of
# files; a whole dataset belongs in an artifact.
MAX_STRING_CHARS = 64 * 1024
# UTF-8 bytes of the whole document as compact JSON. Six times 256 KiB was the price of a
# single 1.5 MiB run list before lists stopped loading configs; the run page and the
# compare page (up to 20 runs) still load whole configs, so this bounds them too.
MAX_DOCUMENT_BYTES = 256 * 1024
# Tags of a run, counted after every change (a tag set to None is removed); the characters
# of a tag's value (the width of the run_tags.value column); and the characters of all the
# run's tag keys and values together, since lists answer with every listed run's tags (a
# page of 500 runs then holds at most 5 MB of them).
MAX_TAGS = 100
MAX_TAG_VALUE_CHARS = 500
MAX_TAGS_CHARS = 10_000
# Characters of a run's notes.
MAX_NOTES_CHARS = 20_000


def encoded_size(document: object) -> int:
    """UTF-8 bytes of ``document`` as compact JSON (nesting must be bounded already)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8", "surrogatepass"))


def document_problem(document: object, where: str = "config") -> str | None:
    """Why ``document`` (a run's config or system information) is beyond the bounds, or
    None when it is within them. Walks the document with a stack, not recursion, so any
    depth gives an answer rather than a RecursionError."""
    if not isinstance(document, Mapping):
        return f"{where}: a JSON object"
    problem = _shape_problem(document, where)
    if problem is not None:
        return problem
    try:
        size = encoded_size(document)
    except ValueError:  # an integer of more than 4,300 digits
        return f"{where}: a number too long to store"
    if size > MAX_DOCUMENT_BYTES:
        return f"{where}: {size} bytes as JSON, more than {MAX_DOCUMENT_BYTES}"
    return None


def _shape_problem(document: Mapping[str, object], where: str) -> str | None:
    """Depth, key count, key and string lengths, and the kinds of values."""
    keys = 0
    stack: list[tuple[object, int, str]] = [(document, 1, where)]
    while stack:
        value, depth, path = stack.pop()
        if not isinstance(value, Mapping | list):
            problem = _scalar_problem(value, path)
            if problem is not None:
                return problem
            continue
        if depth > MAX_DEPTH:
            return f"{path}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, list):
            stack.extend((item, depth + 1, path) for item in value)
            continue
        keys += len(value)
        if keys > MAX_KEYS:
            return f"{where}: more than {MAX_KEYS} keys"
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_KEY_CHARS:
                return f"{path}: keys are strings of at most {MAX_KEY_CHARS} characters"
            stack.append((item, depth + 1, f"{path}.{key}"))
    return None


def _scalar_problem(value: object, path: str) -> str | None:
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            return f"{path}: a string longer than {MAX_STRING_CHARS} characters"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{path}: numbers must be finite"
    elif value is not None and not isinstance(value, int):  # (bool is an int)
        return f"{path}: JSON values only (objects, arrays, strings, numbers, booleans)"
    return None


def tags_problem(tags: Mapping[str, str | None], where: str = "tags") -> str | None:
    """Why a run's tags (after a change) are beyond the bounds, or None. Tag keys are
    checked by the request schema (their characters and length)."""
    present = [value for value in tags.values() if value is not None]
    if len(present) > MAX_TAGS:
        return f"{where}: more than {MAX_TAGS} tags on a run"
    for key, value in tags.items():
        if value is not None and len(value) > MAX_TAG_VALUE_CHARS:
            return f"{where}.{key}: a value longer than {MAX_TAG_VALUE_CHARS} characters"
    chars = sum(len(key) + len(value) for key, value in tags.items() if value is not None)
    if chars > MAX_TAGS_CHARS:
        return f"{where}: {chars} characters of keys and values, more than {MAX_TAGS_CHARS}"
    return None
