"""How the CLI prints: tables with column headers, ``--json`` lines with stable keys, and
words that agree with their numbers ("1 point", "2 points")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from safeboard.words import count, plural

__all__ = ["count", "json_lines", "plural", "printable", "table"]


def printable(text: str) -> str:
    """Control and format characters (terminal escapes, bidi overrides) that a stored
    value could carry, escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def json_lines(rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, keys as given (stable: the CLI's machine-readable form)."""
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=True, default=str))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    no_wrap: Sequence[str] = (),
    width: int | None = None,
    empty: str | None = None,
    compact: bool = False,
) -> None:
    """A table with column headers; cells are plain text (never rich markup), escaped.
    ``width``: the width when not at a terminal (default: rich's, 80); ``compact``: no
    borders, a rule under the headers (more room for text at 80 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    columns = [
        Column(h, no_wrap=h in no_wrap, overflow="ellipsis" if h in no_wrap else "fold")
        for h in headers
    ]
    grid = Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False) if compact else Table(*columns)
    shown = 0
    for row in rows:
        grid.add_row(*(Text(printable(cell)) for cell in row))
        shown += 1
    if shown == 0 and empty is not None:
        click.echo(empty, err=True)
        return
    console = Console()
    if width is not None and not console.is_terminal:
        console.width = width
    console.print(grid)
