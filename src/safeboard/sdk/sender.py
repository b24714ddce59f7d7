"""The background sender: turns logged points into columnar batches and delivers them,
spooling to disk whenever the server cannot take them (P3, R1, R2).

``log()`` appends to a deque (thread-safe, no lock, no I/O). This thread wakes every
``interval`` seconds, drains the deque, and delivers in order: spooled batches first, then
the new ones. A batch keeps its id through every retry, so the server stores it once.

A loop that logs faster than a round drains (hundreds of points a second and more) packs
a slice itself now and then (``pack_inline``: once INLINE_POINTS wait, the oldest
INLINE_SLICE, about 40 us for 10 keys with the C packer, ``_pack.c``, 0.12 to 0.17 ms in
Python; the host's preemptions of the loop's core that land in such a call make it a
stall, so the shorter the call, the fewer stalls): packing in this thread meanwhile made
the two threads trade the interpreter lock thousands of times a second, and each trade
could hold the training loop for milliseconds (issue 13: the worst ``log()`` call). Slices of 256
points took 0.3 to 0.45 ms, and such a call went past 0.5 ms whenever this virtual machine
held the thread a little. A loop slower than INLINE_POINTS a look (LOOK_SECONDS: 12,800
steps a second) leaves the packing to this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from safeboard.client.retry import asked_wait
from safeboard.errors import SafeboardError, ServerUnreachable, Unauthenticated
from safeboard.sdk import notices
from safeboard.sdk.batches import (
    SLICE_VALUES,
    Batch,
    Packer,
    Point,
    to_batches,
)
from safeboard.sdk.delivery import PAUSES, Delivery, Undeliverable, retryable
from safeboard.sdk.media import absorb, is_steps
from safeboard.sdk.spool import RunSpool
from safeboard.sdk.switching import responsive
from safeboard.sdk.uploads import Uploader, spool_record
from safeboard.words import count

__all__ = ["Point", "Sender", "to_batches"]

log = logging.getLogger("safeboard.sdk")

RECHECK_SECONDS = 60.0  # after a refusal that needs the user: one look a minute, no more
PACK_BACKLOG = 2_000  # points waiting in memory past which the sender packs them ...
PACK_SECONDS = 0.01  # ... this often, between its rounds
LOOK_SECONDS = 0.02  # how often the sender looks for a backlog (log() never wakes it)
INLINE_POINTS = 256  # points waiting past which log() packs some itself (pack_inline) ...
INLINE_SLICE = 128  # ... the oldest this many, in one call


class Sender(threading.Thread):
    def __init__(
        self,
        queue: deque[Any],
        spool: RunSpool,
        delivery: Delivery | None,
        *,
        interval: float = 0.5,
        artifacts: deque[dict[str, Any]] | None = None,
        uploader: Uploader | None = None,
        busy_until: float = 0.0,
        away: ServerUnreachable | None = None,
    ) -> None:
        super().__init__(name="safeboard-sender", daemon=True)
        self.queue = queue
        self.artifacts: deque[dict[str, Any]] = artifacts if artifacts is not None else deque()
        self.uploader = uploader  # None: offline, artifacts stay in the spool
        self.spool = spool
        self.delivery = delivery  # None: offline, everything stays in the spool
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failures = int(busy_until > 0)  # delivery rounds failed in a row (init's too)
        self._pause = 0.0
        self._retry_at = busy_until  # monotonic: no request before (what the server asked)
        self._deadline = 0.0
        self._hopeless = False  # the last failure needs the user (credentials), not time
        self._busy = busy_until > 0  # the server said "not now" (Retry-After): said once
        self.refusal: SafeboardError | None = None  # that failure, said once on stderr
        self._spooled = any(True for _ in spool.batches())
        self.delivered_points = 0
        self.dropped_points = 0
        self.idle = threading.Event()  # set after a round that left nothing behind
        self.trouble: str | None = None  # an unexpected failure of a round, said once
        self._held: list[Batch] = []  # the batches of the round in flight
        # Nothing answered at the server's address in the last round: the next one first
        # asks whether anything listens there now (Delivery.listening), and sends nothing
        # while nothing does. A failed request costs the training loop (issue 13).
        self._away = away  # init() found nothing there: its first round asks too
        self._packer = Packer()  # points taken from the queue, not a batch yet
        # Held by whoever touches the packer: the sender's _take and _pack, abandon(), and
        # log()'s pack_inline (which never waits for it).
        self._taking = threading.Lock()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, deadline: float | None = None) -> None:
        """Stop after delivering what is left, retrying until ``deadline`` (monotonic)."""
        self._deadline = deadline if deadline is not None else time.monotonic()
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        next_round = time.monotonic() + self.interval
        while not self._stopping.is_set():
            # Points waiting in memory cost the training loop (each full garbage collection
            # walks them): past PACK_BACKLOG, they are packed every PACK_SECONDS.
            backlog = len(self.queue) >= 3 * PACK_BACKLOG
            wait = PACK_SECONDS if backlog else min(LOOK_SECONDS, next_round - time.monotonic())
            if self._wake.wait(max(0.0, wait)) or time.monotonic() >= next_round:
                self._wake.clear()
                self._guarded_cycle()
                next_round = time.monotonic() + self.interval
            else:
                self._guarded(self._take)
        while True:  # the last rounds: until everything is delivered or time is up
            self._guarded_cycle(final=True)
            left = self._deadline - time.monotonic()
            if self.idle.is_set() or left <= 0 or self.delivery is None or self._hopeless:
                return
            # A server that asked for a wait gets it, also now (the points are spooled).
            pause = self._retry_at - time.monotonic() if self._busy else self._pause
            time.sleep(min(max(pause, 0.1), left))

    def _take(self) -> None:
        """Move the points logged so far into the packer (numpy columns), a slice at a
        time; those logged meanwhile wait for the next look (no chasing the training).
        While the server cannot take them, full batches go to the spool at once: memory
        holds at most one open batch (MAX_BATCH_POINTS values)."""
        queue = self.queue
        left = len(queue) // 3
        if left:
            self.idle.clear()  # flush() waits for these too
        with self._taking, responsive():
            while left > 0 and len(queue) >= 3:
                width = max(1, len(queue[2]))
                count = min(left, len(queue) // 3, max(1, SLICE_VALUES // width))
                self._packer.take(queue, count)  # step, time, values, ...
                left -= count
            if self.delivery is None or self._spooled or time.monotonic() < self._retry_at:
                sealed = self._packer.sealed()
                try:
                    while sealed:
                        self.spool.add_batch(sealed[0])
                        sealed.pop(0)
                        self._spooled = self._spooled or self.delivery is not None
                finally:  # a full disk: those not written stay first in line, in memory
                    self._packer.keep(sealed)

    def pack_inline(self) -> None:
        """Pack the oldest points waiting into the open batch, in the caller's thread (the
        training loop's, from ``log()``): bounded work, about 40 us for INLINE_SLICE
        points of 10 keys with the C packer (a full batch is only set aside: packing its
        body is this thread's work, woken for it). Nothing when this thread is taking
        already: no waiting for it."""
        if not self._taking.acquire(blocking=False):
            return
        try:
            queue = self.queue
            points = min(len(queue) // 3, INLINE_SLICE)
            if not points:
                return
            self.idle.clear()  # flush() waits for these too
            closed = self._packer.closed
            self._packer.take(queue, points)
            if self._packer.closed > closed:
                self._wake.set()  # a full batch to seal and send (or spool)
        finally:
            self._taking.release()

    def add_points(self, flat: list[Any]) -> None:
        """Points from another background thread (the system metrics, sdk/system.py), as
        ``[step, time, values, ...]``: packed in that thread, never through ``log()``'s
        queue (other keys there would cost its inline packing the fast path)."""
        with self._taking:
            self.idle.clear()
            self._packer.add_flat(flat)

    def _pack(self) -> list[Batch]:
        """The points logged so far as batches (the last one sealed)."""
        self._take()
        with self._taking, responsive():  # the packer is touched under _taking only
            return self._packer.batches()

    def _guarded_cycle(self, *, final: bool = False) -> None:
        self._guarded(lambda: self.cycle(final=final))

    def _guarded(self, work: Callable[[], None]) -> None:
        """A round that fails unexpectedly (the spool's files changed under it, a full disk,
        a bug) is said once and retried next round: the thread never dies silently, which
        would leave the run running forever."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001  (see above)
            self._spooled = True
            self._say_trouble(exc)

    def _say_trouble(self, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
        if self.trouble is None:
            notices.say(
                f"run {self.spool.path.name}: delivery failed ({cause}); retrying. What is not "
                f"delivered stays in {self.spool.path} for `safeboard sync`"
            )
        self.trouble = cause

    def cycle(self, *, final: bool = False) -> None:
        """One round: new points become batches; deliver what can be delivered."""
        self.idle.clear()
        self._spool_artifacts()
        self._round(final=final)
        if not self.queue and not self._spooled and not self.artifacts:
            self.idle.set()

    def _spool_artifacts(self) -> None:
        """Artifacts logged since the last round go to the spool (images become PNGs)."""
        while self.artifacts:
            record = self.artifacts[0]
            if is_steps(record):  # histograms and texts logged in a row: one batch
                self.artifacts.popleft()
                absorb(record, self.artifacts)
                self.artifacts.appendleft(record)
            try:
                spool_record(self.spool, record)
            except (OSError, SafeboardError) as exc:
                notices.say(f"artifact {record.get('name')!r} not kept: {exc}")
            self.artifacts.popleft()

    def _release_artifacts(self) -> None:
        """Hand the spooled artifacts to the uploader: the batches logged before them are
        delivered now, and the run exists on the server."""
        if self.uploader is None or self.delivery is None:
            return
        numbers = self.spool.artifact_numbers()
        if numbers and max(numbers) > self.uploader.released:
            self.delivery.ensure_run()
            self.uploader.release(max(numbers))

    def _round(self, *, final: bool) -> None:
        batches = self._pack()
        if self.delivery is None:
            for batch in batches:
                self.spool.add_batch(batch)
            return
        waiting = time.monotonic() < self._retry_at and (self._busy or not final)
        if self._spooled or waiting:
            for batch in batches:
                self.spool.add_batch(batch)
            self._spooled = self._spooled or bool(batches)
            batches = []
        if waiting:
            return
        if self._away is not None and not self.delivery.listening():
            self._keep(batches)
            self._failed(self._away)  # still away: no request, no spool read, one connect
            return
        self._held = batches
        try:
            delivered = False  # a request went through: a refusal is over (not an idle round)
            for path, batch in self.spool.batches():
                self._deliver(batch)
                path.unlink(missing_ok=True)
                delivered = True
            self._spooled = False
            while batches:
                self._deliver(batches[0])
                batches.pop(0)
                delivered = True
            delivered = self.delivery.send_updates() or delivered
            self._release_artifacts()
            self._failures = 0
            self._pause = 0.0
            self._hopeless = False
            self._busy = False
            self._away = None
            if delivered:
                self._recovered()
        except OSError as exc:  # the spool, not the server: keep what is held, say it once
            self._keep(batches)
            self._say_trouble(exc)
        except SafeboardError as exc:
            self._keep(batches)
            self._away = exc if isinstance(exc, ServerUnreachable) else None
            self._failed(exc)

    def _failed(self, exc: SafeboardError) -> None:
        """A round the server did not take: the next one after a pause (what the server
        asked for, or the backoff); a refusal that needs the user is said and kept."""
        assert self.delivery is not None  # noqa: S101
        self._failures += 1
        self._pause = PAUSES.delay(self._failures, exc)
        if asked_wait(exc) is not None and not self._busy:
            self._busy = True
            notices.say_busy(str(self.delivery.meta["url"]), exc, self._pause, self.spool.path)
        self._hopeless = not retryable(exc)
        if self._hopeless:
            self.record_refusal(exc)
        self._retry_at = time.monotonic() + (RECHECK_SECONDS if self._hopeless else self._pause)
        log.debug("delivery paused (%s); retrying in %.1f s", exc.message, self._pause)

    def abandon(self) -> None:
        """finish() gives up on this thread (a request outlives the deadline): what it holds
        goes to the spool for `safeboard sync` (a batch sent twice is stored once: its id)."""
        for batch in [*self._held, *self._pack()]:  # _pack waits for a _take under way
            self.spool.add_batch(batch)

    def _keep(self, batches: list[Batch]) -> None:
        """Not delivered: keep them, in order, on disk."""
        self._spooled = True
        while batches:
            self.spool.add_batch(batches[0])
            batches.pop(0)  # spooled: no longer held in memory (see abandon)

    def record_refusal(self, exc: SafeboardError) -> None:
        """A failure that needs the user: said once on stderr (cause and fix), and kept in
        the spool's run.json as ``last_error`` for `safeboard sync` to show."""
        assert self.delivery is not None  # noqa: S101
        meta = self.delivery.meta
        if self.refusal is None:
            over = bool(meta.get("task")) and isinstance(exc, Unauthenticated)  # its token died
            notices.say_refused(meta["name"], meta["id"], exc, self.spool.path, task=over)
        self.refusal = exc
        meta["last_error"] = notices.error_record(exc)
        self.spool.write_meta(meta)

    def _recovered(self) -> None:
        if self.refusal is None or self.delivery is None:
            return
        self.refusal = None
        self.delivery.meta.pop("last_error", None)
        self.spool.write_meta(self.delivery.meta)
        notices.say(f"delivery resumed for run {self.delivery.meta['id']}")

    def _deliver(self, batch: Batch) -> None:
        assert self.delivery is not None  # noqa: S101
        points = batch.points
        try:
            self.delivery.send(batch)
            self.delivered_points += points
        except Undeliverable as exc:
            self.dropped_points += points
            notices.say(f"the server refused a batch of {count(points, 'point')} for good: {exc}")
