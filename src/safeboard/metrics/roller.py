"""The roller: keeps each key's rollups (metrics/rollups.py) near its newest points, in a
background thread woken after ingest commits, so that neither ingest nor a read pays for
rolling.

Ingest tells it which keys grew (:meth:`Roller.touch`, a few microseconds: no statement);
it waits ``delay`` to gather more, then rolls the keys that have enough unrolled points
(rollups.behind), one slice a write transaction. What it knows of a key's watermark is
kept in memory (a bounded LRU), so a batch costs it no query; after a restart, or on
another replica, the first touch reads the key's summary once. A read that found a long
unrolled tail touches the key too (histories written before rollups existed).

A key whose roll was costly (a resumed run logging below a long history rewrites the
rollups above it each time) waits ten times its last roll's duration before the next:
at most about a tenth of a core. Reads stay exact meanwhile.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from safeboard.metrics import rollups
from safeboard.metrics.codec import Series
from safeboard.storage import writer

__all__ = ["Roller"]

log = logging.getLogger(__name__)

_KNOWN = 65_536  # keys whose watermark is remembered
_BACKOFF = 10.0  # a key waits this many times its last roll's duration
_Key = tuple[str, str]


class Roller:
    def __init__(
        self,
        engine: Engine,
        *,
        delay: float = 0.5,
        idle_exit: float = 30.0,
        min_shift: int = rollups.MIN_SHIFT,
    ) -> None:
        self.engine = engine
        self.delay = delay
        self.idle_exit = idle_exit
        self.min_shift = min_shift
        self.rolled = 0  # roll steps taken (for tests and measurements)
        self._lock = threading.Lock()
        self._passing = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: dict[_Key, tuple[int, int, int]] = {}  # points, first, last step
        self._stale: set[_Key] = set()  # read again before deciding (wanted by a read)
        self._known: OrderedDict[_Key, rollups.State] = OrderedDict()  # the roller's own
        self._not_before: dict[_Key, float] = {}

    def touch(self, run_id: str, batch: Mapping[str, Series]) -> None:
        """Keys that grew by a committed batch."""
        grown = [(k, len(s), int(s.steps.min()), int(s.steps.max())) for k, s in batch.items()]
        self._add(run_id, grown)

    def wanted(self, run_id: str, keys: Iterable[str]) -> None:
        """Keys a read found far behind: rolled at the next pass, whatever is known."""
        self._add(run_id, [(key, 0, sys.maxsize, 0) for key in keys], forget=True)

    def _add(
        self, run_id: str, grown: list[tuple[str, int, int, int]], *, forget: bool = False
    ) -> None:
        with self._lock:
            if self._stopped:
                return
            for key, points, first, last in grown:
                name = (run_id, key)
                if forget:
                    self._stale.add(name)
                self._pending[name] = _joined(self._pending.get(name), (points, first, last))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="safeboard-roller", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._stopping.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)

    def flush(self) -> None:
        """Roll every touched key that is behind now, in the caller's thread."""
        self._pass(wait=False)

    def _pass(self, *, wait: bool) -> None:
        with self._passing:  # one pass at a time: the thread's, or a flush
            self._pass_once(wait=wait)

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self.idle_exit)
            with self._lock:
                if self._stopped or (not woken and not self._pending):
                    self._thread = None
                    return
                self._wake.clear()
            if self._stopping.wait(self.delay):  # gather the batches of the next moments too
                continue
            try:
                self._pass(wait=True)
            except Exception:  # a bug must not end the thread: reads stay exact meanwhile
                log.exception("metrics roller: a pass failed")

    def _pass_once(self, *, wait: bool) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            stale, self._stale = self._stale, set()
        for name in stale:
            self._known.pop(name, None)
        now = time.monotonic()
        later: dict[_Key, tuple[int, int, int]] = {}
        by_run: dict[str, list[str]] = {}
        for name, growth in pending.items():
            if wait and self._not_before.get(name, 0.0) > now:
                later[name] = growth
            else:
                by_run.setdefault(name[0], []).append(name[1])
        for run_id, keys in by_run.items():
            try:
                self._roll_run(run_id, keys, pending)
            except SQLAlchemyError as exc:  # the next touch tries again
                log.warning("could not roll up metrics of run %s (%s)", run_id, type(exc).__name__)
                for key in keys:
                    self._known.pop((run_id, key), None)
        if later:
            with self._lock:
                for name, growth in later.items():
                    self._pending[name] = _joined(self._pending.get(name), growth)
            self._wake.set()

    def _roll_run(
        self, run_id: str, keys: list[str], pending: dict[_Key, tuple[int, int, int]]
    ) -> None:
        unknown = [key for key in keys if (run_id, key) not in self._known]
        if unknown:
            with self.engine.connect() as conn:
                for key, state in rollups.states(conn, run_id, unknown).items():
                    self._remember((run_id, key), state)
        for key in keys:
            name = (run_id, key)
            known = self._known.get(name)
            if known is None:
                continue
            state = known
            if name[1] not in unknown:  # what ingest told us since the last look
                points, first, last = pending[name]
                state = rollups.State(
                    key,
                    state.count + points,
                    min(first, state.first_step),
                    max(last, state.last_step),
                    min(first, state.rolled_to),
                    state.shift,
                    state.chunk_span,
                )
            if rollups.behind(state, self.min_shift):
                self._roll(run_id, key)
            else:
                self._remember(name, state)

    def _roll(self, run_id: str, key: str) -> None:
        began = time.monotonic()
        more, pause = True, 0.0
        while more:
            if pause and self._stopping.wait(pause):
                return
            step_began = time.monotonic()
            with writer(self.engine).begin() as conn:
                more = rollups.roll(conn, run_id, key, min_shift=self.min_shift)
                state = rollups.states(conn, run_id, [key]).get(key)
            self.rolled += 1
            # Between slices of a backlog, a pause as long as the slice (0.1 s at least):
            # SQLite's busy handler retries within 0.1 s, so ingest waiting for the write
            # lock gets it instead of the roller taking it again at once.
            pause = max(0.1, time.monotonic() - step_began)
            if state is not None:
                self._remember((run_id, key), state)
        took = time.monotonic() - began
        self._not_before[(run_id, key)] = time.monotonic() + _BACKOFF * took
        if len(self._not_before) > _KNOWN:
            self._not_before.clear()

    def _remember(self, name: _Key, state: rollups.State) -> None:
        self._known[name] = state
        self._known.move_to_end(name)
        while len(self._known) > _KNOWN:
            self._known.popitem(last=False)


def _joined(
    before: tuple[int, int, int] | None, growth: tuple[int, int, int]
) -> tuple[int, int, int]:
    if before is None:
        return growth
    return growth[0] + before[0], min(growth[1], before[1]), max(growth[2], before[2])
