"""Waking the agents that wait for work: a task was submitted or requeued.

Within one process a condition: ``notify()`` after the commit wakes every waiter at once.
On PostgreSQL the transaction that queues a task also sends ``NOTIFY safeboard_tasks``
(``notify_at_commit``: sent at the commit, dropped on a rollback), and each replica's
listener thread (LISTEN, as safeboard.events does for live updates) wakes its own
waiters, so an agent long-polling one replica takes a task submitted through another.
Waiters also look again every ``poll_seconds`` whatever happens: a notice lost while a
listener reconnects delays a lease by that much at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from safeboard.pg_listener import Listener

__all__ = ["CHANNEL", "Wakeup"]

CHANNEL = "safeboard_tasks"


class Wakeup:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float = 5.0,
        channel: str = CHANNEL,
        name: str = "safeboard-task-wakeup",
        what: str = "task wake-up listener",
    ) -> None:
        """``channel``, ``name``, ``what``: another use of the same machinery (task logs'
        followers: jobs/logs.py) listens on a channel of its own."""
        self.engine = engine
        self.channel = channel
        self.postgres = engine.dialect.name == "postgresql"
        self.poll_seconds = poll_seconds
        self._condition = threading.Condition()
        self._generation = 0
        self._stop = threading.Event()
        # Any notice, or (re)starting to listen (what was queued meanwhile): look again.
        self._listener = (
            Listener(engine, channel, lambda _payload: self.notify(), name=name, what=what,
                     on_listening=self.notify)
            if self.postgres else None
        )  # fmt: skip
        # Waiters on event loops (an agent route's long-poll holds no thread meanwhile).
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def generation(self) -> int:
        """Read before looking for work; ``wait`` returns at once if it changed since."""
        with self._condition:
            return self._generation

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def notify(self) -> None:
        """Wake this process's waiters (after the commit that queued a task)."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: the request ended
                loop.call_soon_threadsafe(event.set)

    def notify_at_commit(self, conn: Connection) -> None:
        """PostgreSQL: tell every replica's listener when ``conn``'s transaction commits."""
        if self.postgres:
            conn.execute(sa.select(sa.func.pg_notify(self.channel, "")))

    def wait(self, seen: int, timeout: float) -> None:
        """Until a notice newer than generation ``seen``, ``timeout`` or the poll interval."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._generation != seen or self._stop.is_set(),
                timeout=min(timeout, self.poll_seconds),
            )

    async def wait_async(self, seen: int, timeout: float) -> None:
        """``wait`` for a waiter on an event loop, without a thread."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._condition:
            if self._generation != seen or self._stop.is_set():
                return
            self._async_waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), min(timeout, self.poll_seconds))
        finally:
            with self._condition:
                self._async_waiters.discard(waiter)

    # The PostgreSQL listener (safeboard/pg_listener.py)

    def start(self) -> None:
        self._stop.clear()
        if self._listener is not None:
            self._listener.start()

    def release(self) -> None:
        """A stop begins: waiters return now, and new ones do not wait."""
        self._stop.set()
        self.notify()

    def stop(self) -> None:
        self.release()  # waiters return now: the server is stopping
        if self._listener is not None:
            self._listener.stop()
