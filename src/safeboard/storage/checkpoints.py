"""SQLite's WAL checkpoints in a thread of their own, after the writes, not inside them.

In WAL mode SQLite copies the log back into the database file (a checkpoint) in whichever
commit finds the log over ``wal_autocheckpoint`` pages (1,000 by default: 4 MB). Metric
batches are large: every third or fourth batch of an import waited for such a copy and its
``fsync``, 8 to 25 ms on this machine, and the request with it (P7, P9). The server's
engine moves that work here:

- its connections checkpoint in a commit only past :data:`FALLBACK_PAGES` (256 MB of log
  at 4 KiB pages): the bound that holds if this thread cannot keep up or is stopped;
- :class:`Checkpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` once the writes pause for
  ``quiet`` seconds, and at least every ``longest`` seconds while they go on. PASSIVE
  never blocks a writer or a reader: it copies what no reader still needs.

Durability is unchanged: a commit is durable once its log frames are synced
(``synchronous = FULL``), wherever the checkpoint runs. PostgreSQL has no such step.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["FALLBACK_PAGES", "Checkpointer", "checkpoint_in_background"]

log = logging.getLogger("safeboard.storage")

FALLBACK_PAGES = 65536  # a commit checkpoints itself past this many pages of log
QUIET_SECONDS = 0.25  # writes paused this long: checkpoint
LONGEST_SECONDS = 2.0  # writes going on: checkpoint at least this often


def checkpoint_in_background(engine: Engine) -> None:
    """``engine``'s connections checkpoint in a commit only past :data:`FALLBACK_PAGES`; a
    :class:`Checkpointer` does the rest. The connections open now are closed (the next ones
    are made so): call it before the engine serves. Nothing on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _fallback(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES}")
        finally:
            cursor.close()

    engine.dispose()


class Checkpointer:
    """Checkpoints ``engine``'s log after its commits: once they pause for ``quiet``
    seconds, at least every ``longest`` while they go on."""

    def __init__(
        self, engine: Engine, *, quiet: float = QUIET_SECONDS, longest: float = LONGEST_SECONDS
    ) -> None:
        self.engine, self.quiet, self.longest = engine, quiet, longest
        self._lock = threading.Condition()
        self._last_commit = 0.0  # monotonic; 0: nothing to checkpoint
        self._first_commit = 0.0  # the oldest commit not checkpointed yet
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # done so far (tests, monitoring)

    def start(self) -> None:
        if self._thread is not None:
            return
        event.listen(self.engine, "commit", self._committed)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="safeboard-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint of what is pending."""
        if self._thread is None:
            return
        event.remove(self.engine, "commit", self._committed)
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()
        self._thread = None

    def _committed(self, _conn: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._last_commit:
                self._first_commit = now
                self._lock.notify()
            self._last_commit = now

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._due(time.monotonic()):
                    self._lock.wait(self._wait(time.monotonic()))
                stopping, pending = self._stopping, bool(self._last_commit)
                self._last_commit = self._first_commit = 0.0
            if pending:
                self._checkpoint()
            if stopping:
                return

    def _due(self, now: float) -> bool:
        if not self._last_commit:
            return False
        return now - self._last_commit >= self.quiet or now - self._first_commit >= self.longest

    def _wait(self, now: float) -> float | None:
        if not self._last_commit:
            return None  # until a commit
        due = min(self._last_commit + self.quiet, self._first_commit + self.longest)
        return max(0.001, due - now)

    def _checkpoint(self) -> None:
        try:
            # Outside a transaction: SQLite refuses to checkpoint inside one.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except SQLAlchemyError as exc:  # a commit checkpoints past the fallback meanwhile
            log.warning("WAL checkpoint failed (%s); trying again after the next writes", exc)
            return
        self.checkpoints += 1
