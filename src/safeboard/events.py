"""Live updates for the dashboard: a small publish/subscribe bus.

Use cases publish after they commit ("run 3f2a got points for loss, acc"); server-sent
event streams subscribe per project or per run. Within one process (SQLite) events go
straight to the subscribers; on PostgreSQL they go through NOTIFY, and every replica's
listener thread (LISTEN) hands them to its own subscribers, so a browser connected to one
replica sees what another replica stored. Events carry ids and names, never data values
that a subscriber could not read anyway: streams are authorized per project.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

__all__ = ["CHANNEL", "Event", "EventBus", "Subscription"]

log = logging.getLogger("safeboard.events")

CHANNEL = "safeboard_events"
_QUEUE_SIZE = 1000  # a subscriber that falls this far behind loses the oldest events
_NOTIFY_LIMIT = 8000  # bytes: PostgreSQL refuses a longer NOTIFY payload


@dataclass(frozen=True)
class Event:
    kind: str  # "metrics" | "run" | "end" (a stream's last: runs/streams.py)
    project_id: int
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)


class Subscription:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, project_id: int, run_id: str | None
    ) -> None:
        self.loop = loop
        self.project_id = project_id
        self.run_id = run_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)

    def wants(self, event: Event) -> bool:
        return event.project_id == self.project_id and self.run_id in (None, event.run_id)

    def offer(self, event: Event) -> None:
        """Runs on the subscriber's loop."""
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: a live view wants the newest
        self.queue.put_nowait(event)


class EventBus:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    # Publishing (from any thread, after the change committed)

    def publish(self, event: Event) -> None:
        if not self.postgres:
            self._deliver(event)
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, event.to_json())))
        except sa.exc.SQLAlchemyError as exc:  # live updates are best effort
            log.warning("could not publish a live update: %s", type(exc).__name__)

    def publish_at_commit(self, conn: Connection, event: Event) -> bool:
        """On PostgreSQL, the NOTIFY goes in ``conn``'s transaction: sent at its commit,
        dropped on a rollback, and no connection of its own (a batch's ingest costs the key
        lookup and its write, nothing more). False elsewhere: publish() after the commit."""
        if not self.postgres:
            return False
        payload = event.to_json()
        if len(payload.encode()) >= _NOTIFY_LIMIT:  # PostgreSQL would abort the transaction
            log.warning("could not publish a live update: %d bytes", len(payload))
            return True
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))
        return True

    def _deliver(self, event: Event) -> None:
        with self._lock:
            targets = [s for s in self._subscribers if s.wants(event)]
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, event)
            except RuntimeError:  # that loop is closed: the stream ended
                self._drop(subscription)

    # Subscribing (from a request's event loop)

    @contextmanager
    def subscribe(self, project_id: int, run_id: str | None = None) -> Iterator[Subscription]:
        subscription = Subscription(asyncio.get_running_loop(), project_id, run_id)
        with self._lock:
            self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    # The PostgreSQL listener

    def start(self) -> None:
        if self.postgres and self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="safeboard-events",
                                              daemon=True)  # fmt: skip
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_once()
            except Exception as exc:  # noqa: BLE001  (reconnect after any failure)
                log.warning("live-update listener lost its connection (%s); retrying",
                            type(exc).__name__)  # fmt: skip
                self._stop.wait(2.0)

    def _listen_once(self) -> None:
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None  # noqa: S101
            driver.autocommit = True
            driver.execute(f"LISTEN {CHANNEL}")
            while not self._stop.is_set():
                for note in driver.notifies(timeout=1.0):
                    self._deliver(Event(**json.loads(note.payload)))
        finally:
            raw.invalidate()  # never hand a LISTENing autocommit connection back to the pool
