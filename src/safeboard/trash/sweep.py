"""The server's retention sweep: shortly after start, then every
``retention.sweep_minutes``, :meth:`~safeboard.trash.service.TrashService.sweep` trashes
runs past their project's age limit and purges the trash past its period.

One asyncio task per server process, the sweep in a worker thread. Replicas on one
PostgreSQL take turns (an advisory lock; the others skip that round). A failed sweep is
logged and tried again next time; it never stops the server. At shutdown a running sweep
stops between two batches and is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Protocol

__all__ = ["FIRST_SWEEP_SECONDS", "retention_sweeps"]

log = logging.getLogger("safeboard.trash")

FIRST_SWEEP_SECONDS = 90.0
SHUTDOWN_WAIT_SECONDS = 30.0


class Sweeper(Protocol):
    def sweep(self, stop: threading.Event | None = None) -> int: ...


async def _loop(sweeper: Sweeper, every: float, first: float, stop: threading.Event,
                idle: threading.Event) -> None:  # fmt: skip
    delay = first
    while True:
        await asyncio.sleep(delay)
        delay = every
        idle.clear()

        def run() -> int:
            try:
                return sweeper.sweep(stop)
            finally:
                idle.set()

        try:
            purged = await asyncio.to_thread(run)
        except Exception:  # logged; the next sweep tries again
            log.exception("the retention sweep failed; next one in %.0f s", every)
            continue
        if purged:
            log.info("purged %d run%s from the trash", purged, "" if purged == 1 else "s")


@contextlib.asynccontextmanager
async def retention_sweeps(
    sweeper: Sweeper, *, every: float, first: float = FIRST_SWEEP_SECONDS
) -> AsyncIterator[asyncio.Task[None]]:
    """Run the sweep periodically for the duration of the block (the app's lifespan)."""
    stop, idle = threading.Event(), threading.Event()
    idle.set()
    task = asyncio.create_task(_loop(sweeper, every, first, stop, idle),
                               name="safeboard-retention")  # fmt: skip
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not await asyncio.to_thread(idle.wait, SHUTDOWN_WAIT_SECONDS):
            log.warning("the retention sweep did not stop within %.0f s", SHUTDOWN_WAIT_SECONDS)
