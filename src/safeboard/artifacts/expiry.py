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

from safeboard import sweeps

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
SHUTDOWN_WAIT_SECONDS = sweeps.SHUTDOWN_WAIT_SECONDS  # to finish the upload it is expiring
_SWEEP = sweeps.Sweep(
    "the sweep of abandoned uploads",
    lambda n: f"expired {n} abandoned upload{'' if n == 1 else 's'}",
    log,
)


class Sweeper(Protocol):
    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int: ...


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
    await sweeps.sweep_periodically(
        sweeper.expire_idle_uploads, _SWEEP, every=every, first=first, stop=stop, idle=idle
    )


@contextlib.asynccontextmanager
async def expiry_sweeps(
    sweeper: Sweeper, *, every: float = SWEEP_SECONDS, first: float = FIRST_SWEEP_SECONDS
) -> AsyncIterator[asyncio.Task[None]]:
    """Sweep for the duration of the block (the app's lifespan). On exit the task is
    cancelled, and a sweep running in its worker thread is told to stop after the upload
    it is expiring (each is one transaction) and waited for, so that the server closes
    its database only after it."""
    async with sweeps.periodic_sweeps(
        sweeper.expire_idle_uploads, _SWEEP, every=every, first=first,
        name="safeboard-upload-expiry",
    ) as task:  # fmt: skip
        yield task
