"""Group commit for metric batches (P9, R1).

Concurrent ingest requests hand their validated batches to one ``GroupWriter``. Whichever
request finds no write under way becomes the group's leader: it takes every batch waiting
(up to ``max_group``), stores them in ONE transaction, commits once and wakes the others.
The group goes in one SAVEPOINT, written by a ``bulk`` function in a few statements for
the whole group (every claim in one, every chunk in one, every summary in one); if a batch
fails, that is rolled back and the group is
written again, each batch in its own SAVEPOINT, so that a failing batch fails alone. Every
request is answered after the commit that holds its batch: acknowledged still means durable
(R3), and exactly once still rests on each batch's claim (``repository.claim_batch``), a
duplicate within one group included. On SQLite one transaction takes the write lock once
for many requests instead of each request queueing for it (the busy handler sleeps between
tries); on PostgreSQL each replica writes one group at a time.

A batch that waits longer than ``wait`` seconds without getting into a group is given up,
unstored, with ``WriteQueueFull`` (503, ``Retry-After``): the client sends it again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from safeboard.errors import SafeboardError, WriteQueueFull
from safeboard.storage import BEGIN_IMMEDIATE

__all__ = ["MAX_GROUP", "WAIT_SECONDS", "GroupWriter"]

T = TypeVar("T")
log = logging.getLogger("safeboard.metrics")

WAIT_SECONDS = 5.0  # a batch waits this long for a group; then 503
MAX_GROUP = 256  # batches in one transaction
# A batch's own failures (its run deleted or out of reach): the batch fails alone. Any
# other failure is the database's (full, locked, gone): SQLite may already have rolled the
# whole transaction back, so the group fails with it, nothing written outside it.
_OWN_FAILURES = (IntegrityError, SafeboardError)


class _Job(Generic[T]):
    """One batch's work, and what became of it."""

    __slots__ = ("done", "error", "item", "result", "work")

    def __init__(self, work: Callable[[Connection], T], item: object) -> None:
        self.work = work
        self.item = item
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupWriter:
    """Runs ``work(conn)`` callables in shared write transactions (see the module)."""

    def __init__(
        self,
        engine: Engine,
        *,
        wait: float = WAIT_SECONDS,
        max_group: int = MAX_GROUP,
        monotonic: Callable[[], float] = time.monotonic,
        bulk: Callable[[Connection, list[Any]], list[Any]] | None = None,
        committed: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self._engine = engine.execution_options(**{BEGIN_IMMEDIATE: True})
        self._wait = wait
        self._max_group = max_group
        self._monotonic = monotonic
        self._bulk = bulk
        # Called with the results of a committed group, in the group's order, by the thread
        # that wrote it, before any of its requests is answered (live events go out in
        # the order of their ids: metrics/service.py).
        self._committed = committed
        self._cond = threading.Condition()
        self._waiting: list[_Job[object]] = []
        self._writing = False
        self.commits = 0  # transactions committed (a test's and an operator's figure)

    @property
    def waiting(self) -> int:
        """Batches waiting for a group now."""
        with self._cond:
            return len(self._waiting)

    def run(self, work: Callable[[Connection], T], item: object = None) -> T:
        """``work``'s result once the transaction holding it has committed; what it raised
        (its savepoint rolled back, the other batches of its group unharmed); or what
        failed the whole transaction (then nothing of the group was stored). With an
        ``item`` (not None), a group whose every job has one is written by ``bulk(conn,
        items)`` (its results in their order: the same as each ``work`` in turn), in a
        few statements for the whole group; ``work`` is the fallback, batch by batch."""
        job: _Job[T] = _Job(work, item)
        deadline = self._monotonic() + self._wait
        with self._cond:
            self._waiting.append(job)  # type: ignore[arg-type]
        while True:
            with self._cond:
                while self._writing and not job.done:
                    left = deadline - self._monotonic()
                    if left <= 0 and job in self._waiting:
                        self._waiting.remove(job)  # type: ignore[arg-type]
                        raise WriteQueueFull()
                    # Past the deadline but already in a group: wait for its commit.
                    self._cond.wait(max(left, 0.05))
                if job.done:
                    break
                # No write under way: lead one, for the batches waiting, in their order.
                self._writing = True
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
            try:
                self._write(group)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _write(self, group: list[_Job[object]]) -> None:
        try:
            with self._engine.begin() as conn:
                if not self._all_at_once(conn, group):
                    for job in group:
                        _alone(conn, job)
            self.commits += 1
            if self._committed is not None:
                self._after_commit([job.result for job in group if job.error is None])
        except BaseException as exc:  # the transaction failed: nothing of the group is stored
            for job in group:
                job.result, job.error = None, job.error or exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for job in group:
                job.done = True

    def _after_commit(self, results: list[Any]) -> None:
        """The group is durable whatever this does: a failure here is logged, and every
        request of the group is still answered as stored."""
        assert self._committed is not None  # noqa: S101
        try:
            self._committed(results)
        except Exception:
            log.exception("after the commit of %d batches", len(results))

    def _all_at_once(self, conn: Connection, group: list[_Job[object]]) -> bool:
        """The usual case, every batch good: the whole group in one savepoint (two
        statements a group rather than two a batch; each statement lets go of the GIL, and
        getting it back behind busy request threads is most of what a write waits for).
        False if a batch failed: the savepoint is rolled back and the group is written
        again, each batch in a savepoint of its own (the work is written to run again)."""
        if len(group) == 1:
            return False
        try:
            with conn.begin_nested():
                if self._bulk is not None and all(job.item is not None for job in group):
                    results = self._bulk(conn, [job.item for job in group])
                else:
                    results = [job.work(conn) for job in group]
        except _OWN_FAILURES:
            return False  # found again, batch by batch
        for job, result in zip(group, results, strict=True):
            job.result = result
        return True


def _alone(conn: Connection, job: _Job[object]) -> None:
    """``job`` in a savepoint of its own: its own failure is kept for its request; any
    other failure, as raised by the work (not the savepoint's rollback that followed it),
    ends the transaction."""
    failure: Exception | None = None
    try:
        with conn.begin_nested():
            try:
                job.result = job.work(conn)
            except Exception as exc:
                failure = exc
                raise
    except Exception as exc:  # noqa: BLE001  (sorted out just below)
        if isinstance(failure, _OWN_FAILURES) and exc is failure:
            job.error = failure  # rolled back to its savepoint; the others go on
            return
        raise (failure or exc) from None
