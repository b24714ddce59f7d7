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


class FaultLog:
    """``record(code, reason)`` for each 503 answered; logs at most one line per code per
    ``interval`` (the first at once), each line with the number of 503s it stands for."""

    def __init__(
        self,
        interval: float = LOG_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def record(self, code: str, reason: str) -> None:
        now = self._clock()
        with self._lock:
            tally = self._tallies.get(code)
            if tally is not None and now - tally.logged_at < self.interval:
                tally.answered += 1
                return
            self._tallies[code] = _Tally(now)
        label = _LABELS.get(code, code.replace("_", " "))
        if tally is None:
            self._log.warning(
                "%s: answering 503 (a line every %.0f s while it lasts): %s",
                label,
                self.interval,
                reason,
            )
        else:
            answered = tally.answered + 1
            self._log.warning(
                "%s (%d request%s answered 503 in the last %.0f s): %s",
                label,
                answered,
                "" if answered == 1 else "s",
                now - tally.logged_at,
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
