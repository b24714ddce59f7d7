"""Infrastructure faults answer 503, and the log says so once per cause per interval.

A database that is down, busy or on a full disk, or a full artifact store, fails every
request alike: each gets 503 with ``Retry-After`` and the cause's code
(storage/faults.py), and the server log gets one line per cause when it starts and then at
most one per ``interval`` with the number answered since, instead of a traceback per
request. Every other ``ServiceUnavailable`` a route raises (an ingest queue's deadline) is
answered and counted the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from safeboard.errors import ServiceUnavailable
from safeboard.storage.faults import classify

__all__ = ["LOG_INTERVAL_S", "FaultLog", "install_fault_handlers"]

LOG_INTERVAL_S = 10.0

log = logging.getLogger("safeboard.faults")

_LABELS = {
    "database_unavailable": "database unavailable",
    "database_busy": "database busy",
    "disk_full": "disk full",
}


@dataclass
class _Tally:
    logged_at: float
    answered: int = 0  # since the line logged at ``logged_at``
    reason: str = ""
    scheduled: bool = False  # a summary is due at ``logged_at + interval``


def _later(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


class FaultLog:
    """``record(code, reason)`` for each 503 answered. Per code: the first one of an
    episode is logged at once; while more come, one line per ``interval`` sums them up (the
    last one after the episode ends), so a fault that fails every request costs the log a
    line per 10 s, not a traceback per request."""

    def __init__(
        self,
        interval: float = LOG_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], None] = _later,
        logger: logging.Logger = log,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._later = later
        self._log = logger
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def record(self, code: str, reason: str) -> None:
        now = self._clock()
        with self._lock:
            tally = self._tallies.get(code)
            if tally is not None and now - tally.logged_at < self.interval:
                tally.answered += 1
                tally.reason = reason
                if not tally.scheduled:
                    tally.scheduled = True
                    due = tally.logged_at + self.interval - now
                    self._later(due, lambda: self._summarize(code))
                return
            if tally is None or tally.answered == 0:  # a new episode
                self._tallies[code] = _Tally(now)
                summary = None
            else:  # the interval passed before its summary did
                summary = (tally.answered + 1, now - tally.logged_at)
                tally.logged_at, tally.answered = now, 0
        label = _LABELS.get(code, code.replace("_", " "))
        if summary is None:
            self._log.warning(
                "%s: answering 503 (a line every %.0f s while it lasts): %s",
                label,
                self.interval,
                reason,
            )
        else:
            self._summary(label, *summary, reason)

    def _summarize(self, code: str) -> None:
        now = self._clock()
        with self._lock:
            tally = self._tallies.get(code)
            if tally is None:
                return
            tally.scheduled = False
            if tally.answered == 0:
                return
            answered, since, reason = tally.answered, tally.logged_at, tally.reason
            tally.logged_at, tally.answered = now, 0
        self._summary(_LABELS.get(code, code.replace("_", " ")), answered, now - since, reason)

    def _summary(self, label: str, answered: int, seconds: float, reason: str) -> None:
        self._log.warning(
            "%s (%d request%s answered 503 in the last %.0f s): %s",
            label,
            answered,
            "" if answered == 1 else "s",
            seconds,
            reason,
        )


def install_fault_handlers(
    app: FastAPI, faults: FaultLog, respond: Callable[[Request, ServiceUnavailable], Response]
) -> None:
    """Driver errors and full disks that ``classify`` knows become ``respond``'s 503s;
    other ones go on to the generic 500 as before."""

    async def on_infrastructure_error(request: Request, exc: Exception) -> Response:
        fault = classify(exc)
        if fault is None:
            raise exc
        faults.record(fault.error.code, fault.reason)
        return respond(request, fault.error)

    app.add_exception_handler(SQLAlchemyError, on_infrastructure_error)
    app.add_exception_handler(OSError, on_infrastructure_error)
