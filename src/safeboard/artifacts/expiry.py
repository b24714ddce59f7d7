"""The server's periodic sweep of abandoned uploads: shortly after start, then hourly, it
expires every project's unfinished uploads idle for ``artifacts.incomplete_upload_hours``
(:meth:`~safeboard.artifacts.service.ArtifactService.expire_idle_uploads`).

One asyncio task per server process, running the synchronous sweep in a worker thread.
Several replicas on one PostgreSQL each run theirs: every deletion is conditional (the row
still unfinished and still idle), so an upload is expired, and audited, once. A failed
sweep is logged and tried again at the next interval; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Protocol

__all__ = [
    "FIRST_SWEEP_SECONDS",
    "SHUTDOWN_WAIT_SECONDS",
    "SWEEP_SECONDS",
    "expiry_sweeps",
    "sweep_periodically",
]

log = logging.getLogger("safeboard.artifacts")

SWEEP_SECONDS = 3600.0
FIRST_SWEEP_SECONDS = 60.0  # after start: not in the way of the first requests
SHUTDOWN_WAIT_SECONDS = 30.0  # for a sweep to finish the upload it is expiring


class Sweeper(Protocol):
    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int: ...


def _sweep(sweeper: Sweeper, stop: threading.Event | None, idle: threading.Event | None) -> int:
    try:
        return sweeper.expire_idle_uploads(stop)
    finally:
        if idle is not None:
            idle.set()


async def sweep_periodically(
    sweeper: Sweeper,
    *,
    every: float = SWEEP_SECONDS,
    first: float = FIRST_SWEEP_SECONDS,
    stop: threading.Event | None = None,
    idle: threading.Event | None = None,
) -> None:
    """Sweep after ``first`` seconds, then every ``every`` seconds, until cancelled
    (``stop`` tells a sweep running in its thread to end after the current upload;
    ``idle`` is clear while a sweep's thread runs, even after this task is cancelled)."""
    delay = first
    while True:
        await asyncio.sleep(delay)
        delay = every
        if idle is not None:
            idle.clear()
        try:
            expired = await asyncio.to_thread(_sweep, sweeper, stop, idle)
        except Exception:  # logged; the next sweep tries again
            log.exception("the sweep of abandoned uploads failed; next one in %.0f s", every)
            continue
        if expired:
            log.info("expired %d abandoned upload%s", expired, "" if expired == 1 else "s")


@contextlib.asynccontextmanager
async def expiry_sweeps(
    sweeper: Sweeper, *, every: float = SWEEP_SECONDS, first: float = FIRST_SWEEP_SECONDS
) -> AsyncIterator[asyncio.Task[None]]:
    """Run :func:`sweep_periodically` as a task for the duration of the block (the app's
    lifespan). On exit the task is cancelled, and a sweep running in its worker thread is
    told to stop after the upload it is expiring (each is one transaction) and waited for,
    so that the server closes its database only after it."""
    stop, idle = threading.Event(), threading.Event()
    idle.set()
    task = asyncio.create_task(
        sweep_periodically(sweeper, every=every, first=first, stop=stop, idle=idle),
        name="safeboard-upload-expiry",
    )
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not await asyncio.to_thread(idle.wait, SHUTDOWN_WAIT_SECONDS):
            log.warning("the sweep of abandoned uploads did not stop within %.0f s",
                        SHUTDOWN_WAIT_SECONDS)  # fmt: skip
