"""The open event streams of this server: at most ``server.event_streams_per_user`` per
account, and each one ended within a second of its credential or its grant ending (S8, S9).

Every ``server.event_stream_recheck_seconds`` (0.5 s by default) one thread reads the
standing of the principals of all open streams together (runs/standing.py: at most four
small indexed queries, whatever the number of streams) and ends the streams whose key was
revoked or expired, whose session ended, whose account was disabled, or whose grant on the
project is gone. It reads only the database, so a revocation made through any replica, or
by the CLI, or an expiry, ends the streams of every replica within one interval; no
revocation path needs a hook. The thread runs only while streams are open. When the check
itself fails (the database is unreachable), the streams end too, with ``unavailable``:
a stream whose right to exist cannot be checked does not go on (the browser reconnects).

The cap is per replica, on purpose: it bounds what one process spends on one account (a
socket, a task, a queue of up to 1,000 events per stream), which is the resource a flood
of streams exhausts. With R replicas an account holds at most R x the cap in all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import TooManyStreams
from safeboard.events import Event, Subscription
from safeboard.runs.standing import Refusal, read_standing, refusal

__all__ = ["END", "StreamGuard", "Ticket"]

log = logging.getLogger("safeboard.streams")

END = "end"  # the kind of the last event a stream sends when the guard ends it
_UNCHECKABLE = Refusal("unavailable", "the server could not check this stream's credential")


class Ticket:
    """One open stream's place in the guard. ``attach`` and ``end`` run on its loop."""

    def __init__(
        self,
        guard: StreamGuard,
        principal: Principal,
        project_id: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.guard = guard
        self.principal = principal
        self.project_id = project_id
        self.loop = loop
        self.refused: Refusal | None = None
        self._subscription: Subscription | None = None

    def attach(self, subscription: Subscription) -> None:
        """The stream's subscription: where the guard puts the END event."""
        self._subscription = subscription
        self._deliver()

    def end(self, why: Refusal) -> None:
        if self.refused is None:
            self.refused = why
            self._deliver()

    def end_data(self) -> dict[str, Any] | None:
        """The END event's data once the stream is refused, else None."""
        if self.refused is None:
            return None
        return {"error": {"code": self.refused.code, "message": self.refused.message}}

    def _deliver(self) -> None:
        data = self.end_data()
        if data is None or self._subscription is None:
            return
        sub = self._subscription
        # It wakes a waiting stream; a full queue may drop it, so the stream also asks
        # end_data() before each event it sends (runs/live.py).
        sub.offer(Event(END, self.project_id, sub.run_id or "", data))

    def close(self) -> None:
        """The stream is over (idempotent)."""
        self.guard.release(self)


class StreamGuard:
    def __init__(
        self,
        engine: Engine,
        *,
        per_user: int,
        recheck_seconds: float,
        session_idle: timedelta,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.per_user = per_user
        self.recheck_seconds = recheck_seconds
        self.session_idle = session_idle
        self.clock = clock
        self.rounds = 0  # checks made, and the statements they took (for measurements)
        self.queries = 0
        self._open: set[Ticket] = set()
        self._per_user: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def admit(self, principal: Principal, project_id: int) -> Ticket:
        """A place for a new stream on the running loop, or TooManyStreams (429)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            held = self._per_user[principal.user_id]
            if held >= self.per_user:
                raise TooManyStreams(
                    f"this account already has {held} open event streams on this server, "
                    "the most allowed (server.event_streams_per_user): close one first",
                    retry_after=5,
                )
            ticket = Ticket(self, principal, project_id, loop)
            self._open.add(ticket)
            self._per_user[principal.user_id] += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="safeboard-streams", daemon=True
                )
                self._thread.start()
        return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket in self._open:
                self._open.remove(ticket)
                self._per_user[ticket.principal.user_id] -= 1
                if not self._per_user[ticket.principal.user_id]:
                    del self._per_user[ticket.principal.user_id]

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def check(self) -> int:
        """One round over every open stream; returns how many it ended."""
        with self._lock:
            watched = list(self._open)
        if not watched:
            return 0
        pairs = list({(t.principal, t.project_id) for t in watched})
        try:
            with self.engine.connect() as conn:
                standing = read_standing(conn, pairs)
        except SQLAlchemyError as exc:
            log.warning("could not check open event streams (%s): ending them",
                        type(exc).__name__)  # fmt: skip
            verdicts: dict[tuple[Principal, int], Refusal | None] = dict.fromkeys(
                pairs, _UNCHECKABLE
            )
        else:
            self.rounds += 1
            self.queries += standing.queries
            now = self.clock()
            verdicts = {pair: refusal(standing, *pair, now, self.session_idle) for pair in pairs}
        ended = 0
        for ticket in watched:
            why = verdicts[(ticket.principal, ticket.project_id)]
            if why is None or ticket.refused is not None:
                continue
            try:
                ticket.loop.call_soon_threadsafe(ticket.end, why)
            except RuntimeError:  # its loop is closed: the stream is long gone
                self.release(ticket)
            ended += 1
        return ended

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        # Rounds start at a fixed rate (not a fixed pause after each round): a change that
        # commits just after a round read the database is seen by the next one, which starts
        # at most ``recheck_seconds`` after that round started.
        next_round = time.monotonic() + self.recheck_seconds
        while not self._stop.wait(max(0.0, next_round - time.monotonic())):
            next_round = max(next_round + self.recheck_seconds, time.monotonic())
            with self._lock:
                if not self._open:
                    self._thread = None  # a new stream starts a new thread
                    return
            try:
                self.check()
            except Exception:  # the guard must outlive any one bad round
                log.exception("event stream check failed")
        with self._lock:
            self._thread = None
