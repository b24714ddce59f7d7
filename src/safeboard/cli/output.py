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


def _cell(cell: str | tuple[str, ...]) -> str:
    """A cell's text, escaped; a tuple is lines (each escaped: a stored newline cannot
    start a line of its own)."""
    return printable(cell) if isinstance(cell, str) else "\n".join(map(printable, cell))


_WORD_KEPT = 24  # a word up to this long is never broken across lines


def _min_width(header: str, cells: Iterable[str], whole: bool) -> int:
    """A column is never narrower than its header, nor (``whole``: ids, times) its longest
    cell, nor its longest word up to _WORD_KEPT: headers, ids and words stay whole at 80
    columns; longer free text wraps between words."""
    lines = [line for cell in cells for line in cell.split("\n")]
    longest = max((len(line) for line in lines), default=0) if whole else 0
    words = max((len(word) for line in lines for word in line.split()), default=0)
    return max(len(header), longest, min(words, _WORD_KEPT))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str | tuple[str, ...]]],
    *,
    no_wrap: Sequence[str] = (),
    width: int | None = None,
    empty: str | None = None,
    compact: bool = False,
) -> None:
    """A table with column headers; cells are plain text (never rich markup), escaped.
    Headers never wrap; ``no_wrap`` columns (ids, times) are kept whole, other columns
    wrap between words. ``width``: the width when not at a terminal (default: rich's, 80);
    ``compact``: no borders, a rule under the headers (more room for text at 80 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    shown = [[_cell(cell) for cell in row] for row in rows]
    if not shown and empty is not None:
        click.echo(empty, err=True)
        return
    console = Console()
    if width is not None and not console.is_terminal:
        console.width = width
    mins = [
        _min_width(h, [row[i] for row in shown if i < len(row)], h in no_wrap)
        for i, h in enumerate(headers)
    ]
    bordered = 3 * len(headers) + 1  # a bar and a space either side of each column
    compact = compact or sum(mins) + bordered > console.width
    room = console.width - (2 * len(headers) - 2 if compact else bordered)
    natural = [
        max([len(h)] + [len(line) for row in shown if i < len(row) for line in row[i].split("\n")])
        for i, h in enumerate(headers)
    ]
    fixed = _widths(mins, natural, headers, no_wrap, room) if sum(natural) > room else None
    columns = [  # too wide: each free-text column gets a width of its own (else rich
        # narrows whichever it likes, ids and short words included)
        Column(h, no_wrap=h in no_wrap, overflow="ellipsis" if h in no_wrap else "fold",
               min_width=least, width=None if fixed is None or h in no_wrap else fixed[i])
        for i, (h, least) in enumerate(zip(headers, mins, strict=True))
    ]  # fmt: skip
    if compact:  # two spaces between columns, a rule under the headers
        grid = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                     padding=(0, 0, 0, 1))  # fmt: skip
    else:
        grid = Table(*columns)
    for row in shown:
        grid.add_row(*(Text(cell) for cell in row))
    console.print(grid)


def _widths(
    mins: list[int], natural: list[int], headers: Sequence[str], no_wrap: Sequence[str], room: int
) -> list[int]:
    """Column widths within ``room``: each at its minimum (the free-text ones narrowed to
    fit, never below their header), then what is left shared among the free-text columns
    that want more, a character at a time."""
    widths = list(mins)
    _fit(widths, headers, no_wrap, room)
    wanting = [i for i, h in enumerate(headers) if h not in no_wrap]
    spare = room - sum(widths)
    while spare > 0:
        short = [i for i in wanting if widths[i] < natural[i]]
        if not short:
            break
        for i in short[:spare]:
            widths[i] += 1
        spare = room - sum(widths)
    return widths


def _fit(mins: list[int], headers: Sequence[str], no_wrap: Sequence[str], room: int) -> None:
    """Narrow the free-text columns' minimums (never below their header, and first not
    below 10) until the table fits in ``room``; ids, times and headers keep theirs."""
    for floor in (10, 0):
        while sum(mins) > room:
            slack = [
                (mins[i] - max(len(h), floor), i)
                for i, h in enumerate(headers)
                if h not in no_wrap and mins[i] > max(len(h), floor)
            ]
            if not slack:
                break
            mins[max(slack)[1]] -= 1
