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

__all__ = ["FIRST_SWEEP_SECONDS", "SWEEP_SECONDS", "expiry_sweeps", "sweep_periodically"]

log = logging.getLogger("safeboard.artifacts")

SWEEP_SECONDS = 3600.0
FIRST_SWEEP_SECONDS = 60.0  # after start: not in the way of the first requests


class Sweeper(Protocol):
    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int: ...


async def sweep_periodically(
    sweeper: Sweeper,
    *,
    every: float = SWEEP_SECONDS,
    first: float = FIRST_SWEEP_SECONDS,
    stop: threading.Event | None = None,
) -> None:
    """Sweep after ``first`` seconds, then every ``every`` seconds, until cancelled
    (``stop`` tells a sweep running in its thread to end after the current upload)."""
    delay = first
    while True:
        await asyncio.sleep(delay)
        delay = every
        try:
            expired = await asyncio.to_thread(sweeper.expire_idle_uploads, stop)
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
    lifespan); on exit it is cancelled and awaited, and a sweep in its worker thread stops
    after the upload it is expiring (each is one transaction)."""
    stop = threading.Event()
    task = asyncio.create_task(
        sweep_periodically(sweeper, every=every, first=first, stop=stop),
        name="safeboard-upload-expiry",
    )
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
