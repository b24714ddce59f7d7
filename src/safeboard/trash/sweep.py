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

from safeboard import sweeps

__all__ = ["FIRST_SWEEP_SECONDS", "retention_sweeps"]

log = logging.getLogger("safeboard.trash")

FIRST_SWEEP_SECONDS = 90.0
_SWEEP = sweeps.Sweep(
    "the retention sweep",
    lambda n: f"purged {n} run{'' if n == 1 else 's'} from the trash",
    log,
)


class Sweeper(Protocol):
    def sweep(self, stop: threading.Event | None = None) -> int: ...


@contextlib.asynccontextmanager
async def retention_sweeps(
    sweeper: Sweeper, *, every: float, first: float = FIRST_SWEEP_SECONDS
) -> AsyncIterator[asyncio.Task[None]]:
    """Run the sweep periodically for the duration of the block (the app's lifespan)."""
    async with sweeps.periodic_sweeps(
        sweeper.sweep, _SWEEP, every=every, first=first, name="safeboard-retention"
    ) as task:
        yield task
