"""The reaper: a background thread, one per server process, that marks attempts whose
lease lapsed ``lost`` and requeues their tasks under the retry policy
(``TaskQueue.reap``) every ``jobs.reaper_seconds``. Several replicas may each run one:
a pass takes each task under its row lock and re-checks it, so none is reaped twice."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from safeboard.jobs.queue import TaskQueue

__all__ = ["Reaper"]

log = logging.getLogger("safeboard.jobs")
_PAGE = 100  # attempts a pass marks lost per transaction


class Reaper:
    def __init__(self, queue: TaskQueue, every: float) -> None:
        self.queue = queue
        self.every = every
        self.passes = 0  # for tests and measurements
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="safeboard-reaper",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                while self.queue.reap(_PAGE) == _PAGE and not self._stopping.is_set():
                    pass  # a full page: there may be more lapsed leases
            except SQLAlchemyError as exc:  # the next pass tries again
                log.warning("task reaper: a pass failed (%s)", type(exc).__name__)
            except Exception:  # a bug must not end the thread
                log.exception("task reaper: a pass failed")
            self.passes += 1
