"""Words that agree with their numbers ("1 point", "2 points"): one helper for everything
that talks to a user (the CLI, the SDK's notices, `safeboard sync`)."""

from __future__ import annotations

__all__ = ["count", "plural"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``word`` agreeing with ``n``: plural(1, "point") -> "point", plural(2, ...) ->
    "points"; give ``many`` where adding "s" is wrong."""
    return word if n == 1 else (many or f"{word}s")


def count(n: int, word: str, many: str | None = None) -> str:
    """count(1, "point") -> "1 point"; count(3, "entry", "entries") -> "3 entries"."""
    return f"{n:,} {plural(n, word, many)}"
