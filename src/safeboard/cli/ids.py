"""Ids as the CLI prints them: a run, artifact or key id may be given whole or as any
unique prefix. The server resolves run and artifact prefixes among what the caller can
see (``GET /api/v1/run-ids``, ``/artifact-ids``: no listing of everything); an ambiguous
prefix names its candidates and the command exits non-zero."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from safeboard.errors import BadRequest, NotFound
from safeboard.vocabulary import is_id, is_id_prefix

__all__ = ["AMBIGUOUS_SHOWN", "pick", "resolve"]

AMBIGUOUS_SHOWN = 10


def pick(kind: str, given: str, candidates: Sequence[str]) -> str:
    """The one candidate for ``given``; NotFound for none, BadRequest listing them for
    several."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NotFound(f"no {kind} {given!r} (or not one you can see)")
    shown = ", ".join(candidates[:AMBIGUOUS_SHOWN])
    more = " and more" if len(candidates) > AMBIGUOUS_SHOWN else ""
    raise BadRequest(
        f"ambiguous {kind} id prefix {given!r}: it could be {shown}{more}; give more characters"
    )


def resolve(kind: str, given: str, lookup: Callable[[str, int], list[str]]) -> str:
    """A whole id as given; a prefix through ``lookup(prefix, limit)``."""
    text = given.strip().lower()
    if is_id(text):
        return text
    if not is_id_prefix(text):
        raise BadRequest(f"{given!r} is not a {kind} id: ids are lowercase hex, as printed")
    return pick(kind, given, lookup(text, AMBIGUOUS_SHOWN + 1))
