"""A server's periodic sweeps (abandoned uploads, the retention of the trash): one asyncio
task per server process, each sweep in a worker thread, a failed sweep logged and tried
again at the next interval (it never stops the server), and at shutdown a running sweep
told to stop and waited for, so that the server closes its database only after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["SHUTDOWN_WAIT_SECONDS", "Sweep", "periodic_sweeps", "sweep_periodically"]

SHUTDOWN_WAIT_SECONDS = 30.0  # for a running sweep to reach its next stopping point

Work = Callable[[threading.Event | None], int]  # one sweep; returns how many it handled


@dataclass(frozen=True)
class Sweep:
    """What a sweep is called in the log: ``what`` ("the retention sweep"), and how a
    count it handled reads (``done(3)`` -> "purged 3 runs from the trash")."""

    what: str
    done: Callable[[int], str]
    log: logging.Logger


async def sweep_periodically(
    work: Work,
    sweep: Sweep,
    *,
    every: float,
    first: float,
    stop: threading.Event | None = None,
    idle: threading.Event | None = None,
) -> None:
    """Sweep after ``first`` seconds, then every ``every`` seconds, until cancelled
    (``stop`` tells a sweep running in its thread to end at its next stopping point;
    ``idle`` is clear while a sweep's thread runs, even after this task is cancelled)."""
    delay = first
    while True:
        await asyncio.sleep(delay)
        delay = every
        if idle is not None:
            idle.clear()
        try:
            handled = await asyncio.to_thread(_run, work, stop, idle)
        except Exception:  # logged; the next sweep tries again
            sweep.log.exception("%s failed; next one in %.0f s", sweep.what, every)
            continue
        if handled:
            sweep.log.info("%s", sweep.done(handled))


def _run(work: Work, stop: threading.Event | None, idle: threading.Event | None) -> int:
    try:
        return work(stop)
    finally:
        if idle is not None:
            idle.set()


@contextlib.asynccontextmanager
async def periodic_sweeps(
    work: Work, sweep: Sweep, *, every: float, first: float, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run :func:`sweep_periodically` as the task ``name`` for the duration of the block
    (the app's lifespan); on exit, cancel it and wait for a sweep still in its thread."""
    stop, idle = threading.Event(), threading.Event()
    idle.set()
    task = asyncio.create_task(
        sweep_periodically(work, sweep, every=every, first=first, stop=stop, idle=idle),
        name=name,
    )
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not await asyncio.to_thread(idle.wait, SHUTDOWN_WAIT_SECONDS):
            sweep.log.warning("%s did not stop within %.0f s", sweep.what, SHUTDOWN_WAIT_SECONDS)
