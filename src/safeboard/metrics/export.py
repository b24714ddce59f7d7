"""Every point of one key as a stream (``GET /points``): the JSON of the whole history
written a window of chunks at a time, so that the memory an export holds is a window's,
whatever the history's length (P10: <= 300 MiB resident for 10,000,000 points; one body
of every point took 457 MiB and more).

The body keeps its columnar shape, ``{"key", "steps", "times", "values"}``, so it is
written in three passes over the chunks, one per column, each window read again from the
database: a window's chunks are listed once, before the first byte, and each pass reads
exactly those (chunks stored meanwhile are left out, so the three columns always agree).

Points come out in step order, as ``codec.merge`` orders them: chunks whose step ranges
overlap (steps logged out of order) form a group that is merged together, and a group
too big for one window is merged a step range at a time. Groups that do not overlap (the
usual, in-order case) are packed into windows of about ``WINDOW_POINTS`` points.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import Connection, Engine

from safeboard.metrics import codec
from safeboard.metrics import repository as metrics
from safeboard.metrics.codec import to_json_floats
from safeboard.metrics.repository import Spans

__all__ = ["WINDOW_POINTS", "Export", "ExportChanged", "plan"]

WINDOW_POINTS = 262_144  # about 6 MiB of arrays and 6 MiB of JSON a window and column


class ExportChanged(RuntimeError):
    """Chunks listed for the export were deleted before it ended (the run was deleted):
    the stream is cut rather than finished with columns of different lengths."""


@dataclass
class Window:
    """Chunks read and merged together: ``ids`` (logged order), the lowest and highest of
    their first steps (how the index finds them) and the steps kept, ``lo <= step <= hi``.
    ``plain``: known after the steps pass to need no reordering or cutting, so the other
    passes read their column alone."""

    ids: npt.NDArray[np.int64]
    first_steps: tuple[int, int]
    lo: int
    hi: int
    plain: bool = field(default=False)


def _groups(spans: Spans) -> npt.NDArray[np.intp]:
    """Where each group of overlapping chunks begins (spans are ordered by first step)."""
    if spans.ids.size == 0:
        return np.empty(0, dtype=np.intp)
    reach = np.maximum.accumulate(spans.last_step)
    return np.flatnonzero(np.r_[True, spans.first_step[1:] > reach[:-1]])


def plan(
    spans: Spans, start: int | None, end: int | None, budget: int = WINDOW_POINTS
) -> list[Window]:
    """The windows that cover ``spans`` in step order, each of about ``budget`` points:
    whole groups packed together, or one big group's chunks by step range."""
    low = -(2**63) if start is None else start
    high = 2**63 - 1 if end is None else end
    starts = _groups(spans)
    ends = np.r_[starts[1:], spans.ids.size] if starts.size else starts
    windows: list[Window] = []
    first = 0  # the first group of the window being packed
    packed = 0
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        size = int(spans.count[a:b].sum())
        if size > budget:
            if first < g:
                windows.append(_whole(spans, int(starts[first]), a, low, high))
            windows.extend(_split(spans, a, b, size=size, budget=budget, low=low, high=high))
            first, packed = g + 1, 0
            continue
        if packed and packed + size > budget:
            windows.append(_whole(spans, int(starts[first]), a, low, high))
            first, packed = g, 0
        packed += size
    if first < starts.size:
        windows.append(_whole(spans, int(starts[first]), spans.ids.size, low, high))
    return windows


def _whole(spans: Spans, a: int, b: int, low: int, high: int) -> Window:
    lo = max(low, int(spans.first_step[a:b].min()))
    hi = min(high, int(spans.last_step[a:b].max()))
    ids = np.sort(spans.ids[a:b])
    return Window(ids, (int(spans.first_step[a]), int(spans.first_step[b - 1])), lo, hi)


def _split(
    spans: Spans, a: int, b: int, *, size: int, budget: int, low: int, high: int
) -> list[Window]:
    """A group bigger than a window: step ranges of equal width, each with the group's
    chunks that reach into it (reading a chunk once per range it spans)."""
    lo = max(low, int(spans.first_step[a:b].min()))
    hi = min(high, int(spans.last_step[a:b].max()))
    parts = -(-size // budget)
    width = max(1, -(-(hi - lo + 1) // parts))
    first, last = spans.first_step[a:b], spans.last_step[a:b]
    windows = []
    for left in range(lo, hi + 1, width):
        right = min(hi, left + width - 1)
        inside = (first <= right) & (last >= left)
        if np.any(inside):
            ids = np.sort(spans.ids[a:b][inside])
            bounds = (int(first[inside].min()), int(first[inside].max()))
            windows.append(Window(ids, bounds, left, right))
    return windows


class Export:
    """An export listed and checked (the access check and the listing happen before the
    response begins, so their errors are ordinary answers); ``json()`` writes it."""

    def __init__(self, engine: Engine, run_id: str, key: str, windows: list[Window]) -> None:
        self.engine = engine
        self.run_id = run_id
        self.key = key
        self.windows = windows

    def json(self) -> Iterator[bytes]:
        yield b'{"key":' + orjson.dumps(self.key) + b',"steps":['
        yield from self._column("steps")
        yield b'],"times":['
        yield from self._column("times")
        yield b'],"values":['
        yield from self._column("values")
        yield b"]}"

    def _column(self, column: str) -> Iterator[bytes]:
        separator = b""
        for window in self.windows:
            array = self._read(window, column)
            if array.size:
                yield separator + _numbers(array, column)[1:-1]
                separator = b","

    def _read(self, window: Window, column: str) -> npt.NDArray[np.generic]:
        steps_pass = column == "steps"
        with_steps = not steps_pass and not window.plain
        with self.engine.connect() as conn, _unmapped(conn):
            rows = metrics.load_span(
                conn,
                self.run_id,
                self.key,
                ids=window.ids,
                first_steps=window.first_steps,
                column=column,
                with_steps=with_steps,
            )
        if len(rows) != window.ids.size:
            raise ExportChanged(f"chunks of {self.key!r} deleted during its export")
        column_of = codec.decode_steps if steps_pass else codec.decode_values
        data = np.concatenate([column_of(c) for _, c in rows])
        if not steps_pass and window.plain:
            return data
        steps = data if steps_pass else np.concatenate([codec.decode_steps(s) for s, _ in rows])
        sorted_ = steps.size < 2 or not np.any(steps[1:] < steps[:-1])
        if not sorted_:
            order = np.argsort(steps, kind="stable")  # stable: later chunks win ties last
            steps, data = steps[order], data[order]
        whole = steps.size == 0 or (int(steps[0]) >= window.lo and int(steps[-1]) <= window.hi)
        if not whole:
            a = int(np.searchsorted(steps, window.lo, "left"))
            b = int(np.searchsorted(steps, window.hi, "right"))
            data = data[a:b]
        if steps_pass:
            window.plain = bool(sorted_ and whole)
        return data


@contextmanager
def _unmapped(conn: Connection) -> Iterator[None]:
    """On SQLite, read without mmap: pages read through the connection's mapping stay
    resident in the server (a 10,000,000-point export: 240 MiB more), pages read into
    its page cache are reused (2 MiB). Setting mmap_size also unmaps what earlier reads
    mapped; the mapping comes back, empty, for the next read."""
    if conn.dialect.name != "sqlite":
        yield
        return
    size = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar() or 0)
    conn.exec_driver_sql("PRAGMA mmap_size = 0")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA mmap_size = {size:d}")


def _numbers(array: npt.NDArray[np.generic], column: str) -> bytes:
    """A JSON array of the numbers; values that are NaN or infinite as the ingest API
    spells them (times are written as they are, as the whole-body answer wrote them)."""
    if column == "values" and not bool(np.all(np.isfinite(array))):
        return orjson.dumps(to_json_floats(array))  # type: ignore[arg-type]
    return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
