"""Live updates for the dashboard: a small publish/subscribe bus, and its recent past.

Use cases publish what they committed ("run 3f2a got points for loss, acc"); server-sent
event streams subscribe per project or per run. Each event is first a row of
``live_events`` (storage/live_events.py), written in the transaction of the change it
announces (``publish_at_commit``), or in one of its own (``publish``): its id is the
stream's ``id:``, the same on every replica and across restarts, and a stream that
reconnects with ``Last-Event-ID`` replays the rows after it (``replay``) within the last
``REPLAY_SECONDS`` and ``REPLAY_LIMIT`` events; beyond them the page is told to reload.

Within one process (SQLite) events go straight to the subscribers after the commit; on
PostgreSQL they go through NOTIFY, and every replica's listener thread (LISTEN) hands
them to its own subscribers, so a browser connected to one replica sees what another
replica stored. Events carry ids and names, never data values that a subscriber could not
read anyway: streams are authorized per project.

At a graceful stop ``close_streams`` ends every open stream with a ``closing`` event, so
browsers reconnect (to this server once it is back, or to another replica) instead of
holding the stop until its timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from safeboard.clock import Clock, utcnow
from safeboard.pg_listener import Listener

__all__ = [
    "CHANNEL",
    "CLOSING",
    "MEDIA",
    "REPLAY_LIMIT",
    "REPLAY_SECONDS",
    "Event",
    "EventBus",
    "Replay",
    "Subscription",
    "media_event",
]

log = logging.getLogger("safeboard.events")

CHANNEL = "safeboard_events"
CLOSING = "closing"  # the kind of the last event of every stream at a graceful stop
MEDIA = "media"  # a run's new histogram, image or text steps (media_event)
REPLAY_SECONDS = 600  # how far back a reconnecting stream can catch up ...
REPLAY_LIMIT = 1000  # ... and with how many events at most; beyond either, "reset"
_TRIM_EVERY = 30.0  # seconds between trims of live_events (by whichever write comes next)
_QUEUE_SIZE = 1000  # a subscriber that falls this far behind loses the oldest events
_NOTIFY_LIMIT = 8000  # bytes: PostgreSQL refuses a longer NOTIFY payload
# Key of the PostgreSQL advisory lock that puts event ids in commit order ("sb_event").
_ORDER_LOCK_KEY = int.from_bytes(b"sb_event", "big") - 2**63

# live_events (storage/live_events.py: the model, migrated); this module sits below storage.
_LOG = sa.table(
    "live_events",
    sa.column("id", sa.BigInteger()),
    sa.column("project_id", sa.Integer()),
    sa.column("run_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("data", sa.Text()),
    sa.column("at", sa.DateTime(timezone=True)),
)

# Ids in commit order. A stream's position is the last id it sent, so every id below it must
# have committed (or never will) by the time a later one is seen. PostgreSQL's sequence does
# not promise that: two transactions may draw 10 and 11 and commit 11 first, and a stream
# that read 11 in between would never send 10. So a transaction takes the advisory lock
# ``_ORDER_LOCK_KEY`` just before it draws its ids and holds it to its commit: the next
# writer draws after that commit is visible (the INSERT's rows come from a join with
# ``ordered``, which has its one row only once the lock is held). The lock, the rows and
# their NOTIFYs are one statement, so the lock is held from that statement to the commit
# only (each round trip held would cost the other replicas' waiting writers this one's
# getting the GIL back behind its busy request threads); NOTIFY already serialises the
# commits of notifying transactions (PostgreSQL holds its queue lock from pre-commit through
# the commit's flush). The ids are drawn in the events' order (ORDER BY n, below the
# INSERT's defaults), and pg_notify, volatile, runs after the final ORDER BY: the NOTIFYs
# leave in id order. SQLite has one writer at a time: its ids are in commit order already.
_RECORD_PG = sa.text("""
WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock(:lock)),
new AS (
    INSERT INTO live_events (project_id, run_id, kind, data, at)
    SELECT e.project_id, e.run_id, e.kind, e.data, :at
    FROM ordered, unnest(CAST(:project_ids AS integer[]), CAST(:run_ids AS text[]),
                         CAST(:kinds AS text[]), CAST(:data AS text[]))
                  WITH ORDINALITY AS e(project_id, run_id, kind, data, n)
    ORDER BY e.n
    RETURNING id
),
numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM new)
SELECT numbered.id,
       CASE WHEN p.head IS NOT NULL THEN pg_notify(:channel, p.head || numbered.id || '}') END
FROM numbered JOIN unnest(CAST(:heads AS text[])) WITH ORDINALITY AS p(head, n) USING (n)
ORDER BY numbered.id
""").bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True)))

# Many events' rows in one statement (SQLite). Their ids come in the rows' order (rowids are
# drawn row by row); RETURNING's order is not promised: sorted.
_RECORD_MANY = sa.insert(_LOG).returning(_LOG.c.id)


def _data(event: Event) -> str:
    return json.dumps(event.data, separators=(",", ":"), allow_nan=False)


@dataclass(slots=True)
class Event:
    kind: str  # "metrics" | "run" | MEDIA; "end", "closing" end a stream (runs/streams.py, here)
    project_id: int
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0  # its live_events row, set when recorded; 0: not recorded (end, closing)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)


def media_event(project_id: int, run_id: str, **steps: dict[str, int]) -> Event:
    """A run's new steps of histograms, images or texts (``histograms=``, ``images=``,
    ``texts=``: each key's last step), for the run page's media sections (media.js)."""
    return Event(MEDIA, project_id, run_id, {kind: last for kind, last in steps.items() if last})


@dataclass(frozen=True)
class Replay:
    """What a stream that reconnects after ``Last-Event-ID`` missed: ``events`` in id
    order, or ``reset`` (more than the window holds: reload) with the newest id to go on
    from."""

    events: list[Event]
    reset: bool = False
    newest: int = 0


class Subscription:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, project_id: int, run_id: str | None
    ) -> None:
        self.loop = loop
        self.project_id = project_id
        self.run_id = run_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        self.closing = False  # the server is stopping: the stream sends CLOSING and ends

    def wants(self, event: Event) -> bool:
        return event.project_id == self.project_id and self.run_id in (None, event.run_id)

    def offer(self, event: Event) -> None:
        """Runs on the subscriber's loop."""
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: a live view wants the newest
        self.queue.put_nowait(event)

    def close(self) -> None:
        """Runs on the subscriber's loop: wakes the stream, which then ends."""
        self.closing = True
        self.offer(Event(CLOSING, self.project_id, self.run_id or ""))


class EventBus:
    def __init__(self, engine: Engine, *, writes: Engine | None = None,
                 clock: Clock = utcnow) -> None:  # fmt: skip
        """``writes``: the engine for the transactions of ``publish`` (on SQLite, one that
        takes the write lock at BEGIN: storage.writer)."""
        self.engine = engine
        self.writes = writes or engine
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._listener = (
            Listener(engine, CHANNEL, self._notice, name="safeboard-events",
                     what="live-update listener")
            if self.postgres else None
        )  # fmt: skip
        self._closing = False
        self._trimmed = time.monotonic()
        self.replay_seconds = REPLAY_SECONDS
        self.replay_limit = REPLAY_LIMIT

    # Publishing (from any thread)

    def publish_at_commit(self, conn: Connection, event: Event) -> bool:
        """Record ``event`` in ``conn``'s transaction (setting ``event.id``): it exists
        exactly when the change it announces does. On PostgreSQL its NOTIFY goes in the same
        transaction (sent at the commit, dropped on a rollback): True. Elsewhere False: call
        ``publish(event)`` after the commit to hand it to this process's streams."""
        return self.publish_all_at_commit(conn, [event])

    def publish_all_at_commit(self, conn: Connection, events: Sequence[Event]) -> bool:
        """``publish_at_commit`` for many events, recorded in one statement."""
        if not events:
            return self.postgres
        now = self.clock()
        if self.postgres:
            ids = self._record_and_notify(conn, events, now)
        else:  # one writer at a time: the ids are in commit order already
            rows = [{"project_id": e.project_id, "run_id": e.run_id, "kind": e.kind,
                     "data": _data(e), "at": now} for e in events]  # fmt: skip
            ids = sorted(conn.execute(_RECORD_MANY, rows).scalars().all())
        for event, new_id in zip(events, ids, strict=True):
            event.id = int(new_id)
        if self._trim_due():
            self._trim(conn, now - timedelta(seconds=self.replay_seconds))
        return self.postgres

    def publish(self, event: Event) -> None:
        """After the commit: hand ``event`` to the streams. One that ``publish_at_commit``
        did not record is recorded first, in a transaction of its own; one it recorded on
        PostgreSQL left with its NOTIFY already."""
        if event.id:
            if not self.postgres:
                self._deliver(event)
            return
        try:
            with self.writes.begin() as conn:
                self.publish_all_at_commit(conn, [event])
        except sa.exc.SQLAlchemyError as exc:  # live updates are best effort
            log.warning("could not publish a live update: %s", type(exc).__name__)
            event.id = 0
        if not self.postgres:
            self._deliver(event)

    @staticmethod
    def _record_and_notify(conn: Connection, events: Sequence[Event], now: Any) -> list[int]:
        """PostgreSQL: ``_RECORD_PG`` (the ids' lock, the rows, their NOTIFYs in id order);
        the new ids in the events' order."""
        heads: list[str | None] = []
        for event in events:
            # The payload is ``event.to_json()``, whose last field is the id: that comes last.
            head = replace(event, id=0).to_json().removesuffix("0}")
            if len(head.encode()) + 20 >= _NOTIFY_LIMIT:  # PostgreSQL would abort the transaction
                log.warning("could not publish a live update: %d bytes", len(head))
                heads.append(None)
            else:
                heads.append(head)
        values = {"lock": _ORDER_LOCK_KEY, "channel": CHANNEL, "at": now, "heads": heads,
                  "project_ids": [e.project_id for e in events],
                  "run_ids": [e.run_id for e in events], "kinds": [e.kind for e in events],
                  "data": [_data(e) for e in events]}  # fmt: skip
        return [int(new_id) for new_id in conn.execute(_RECORD_PG, values).scalars()]

    def trim(self) -> None:
        """Drop the events older than the replay window now (writes do it as they go)."""
        with self.writes.begin() as conn:
            self._trim(conn, self.clock() - timedelta(seconds=self.replay_seconds))

    def _trim_due(self) -> bool:
        with self._lock:
            if time.monotonic() - self._trimmed < _TRIM_EVERY:
                return False
            self._trimmed = time.monotonic()
            return True

    @staticmethod
    def _trim(conn: Connection, cutoff: Any) -> None:
        """Rows older than the window go, by id range (no index on ``at``: the scan stops
        at the first row kept); the newest row always stays, so ids never go back."""
        newest = conn.execute(sa.select(sa.func.max(_LOG.c.id))).scalar()
        first_kept = conn.execute(
            sa.select(_LOG.c.id).where(_LOG.c.at >= cutoff).order_by(_LOG.c.id).limit(1)
        ).scalar()
        keep = first_kept if first_kept is not None else newest
        if keep is not None:
            conn.execute(sa.delete(_LOG).where(_LOG.c.id < keep))

    def _notice(self, payload: str) -> None:
        """A NOTIFY from any replica (this one's included): its event, to the streams."""
        self._deliver(Event(**json.loads(payload)))

    def _deliver(self, event: Event) -> None:
        with self._lock:
            targets = [s for s in self._subscribers if s.wants(event)]
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, event)
            except RuntimeError:  # that loop is closed: the stream ended
                self._drop(subscription)

    # Catching up (a stream that reconnects with Last-Event-ID)

    def replay(self, after: int, project_id: int, run_id: str | None) -> Replay:
        """The recorded events after id ``after`` that a stream of ``project_id`` (one run
        of it: ``run_id``) would have sent, or a reset when some of them may be gone (the
        window was trimmed past ``after``, or more than ``replay_limit`` are due). The
        caller has authorized the stream for the project, as for live events."""
        ids = sa.select(sa.func.min(_LOG.c.id), sa.func.max(_LOG.c.id))
        query = sa.select(_LOG).where(_LOG.c.id > after, _LOG.c.project_id == project_id)
        if run_id is not None:
            query = query.where(_LOG.c.run_id == run_id)
        with self.engine.connect() as conn:
            oldest, newest = conn.execute(ids).one()
            if newest is None or after > newest or oldest > after + 1:
                # Nothing recorded since this database began, an id from another one,
                # or events after ``after`` trimmed: the page reloads what it shows.
                return Replay([], reset=True, newest=newest or 0)
            rows = conn.execute(query.order_by(_LOG.c.id).limit(self.replay_limit + 1)).all()
        if len(rows) > self.replay_limit:
            return Replay([], reset=True, newest=newest)
        events = [Event(r.kind, r.project_id, r.run_id, json.loads(r.data), r.id) for r in rows]
        return Replay(events, newest=newest)

    # Subscribing (from a request's event loop)

    @contextmanager
    def subscribe(self, project_id: int, run_id: str | None = None) -> Iterator[Subscription]:
        subscription = Subscription(asyncio.get_running_loop(), project_id, run_id)
        with self._lock:
            self._subscribers.add(subscription)
            closing = self._closing
        if closing:  # opened during the stop: it ends at once, the browser comes back
            subscription.close()
        try:
            yield subscription
        finally:
            self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def close_streams(self) -> None:
        """A graceful stop begins: every open stream (and any opened from now on) sends
        CLOSING and ends, so the server need not wait for them."""
        with self._lock:
            self._closing = True
            subscriptions = list(self._subscribers)
        for subscription in subscriptions:
            try:
                subscription.loop.call_soon_threadsafe(subscription.close)
            except RuntimeError:  # that loop is closed: the stream ended
                self._drop(subscription)

    # The PostgreSQL listener (safeboard/pg_listener.py)

    def start(self) -> None:
        if self._listener is not None:
            self._listener.start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
