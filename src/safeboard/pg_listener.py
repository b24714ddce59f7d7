"""A PostgreSQL ``LISTEN`` thread: what other replicas ``NOTIFY`` on a channel, handed to a
callback. Live updates (``safeboard.events``) and the task queue's wake-ups
(``jobs/wakeup.py``) each run one.

The thread holds its own autocommit connection, never handed back to the pool (it is
invalidated when the thread ends), waits for notices in short steps so that ``stop``
ends it within a quarter of a second, and reconnects after any failure, saying so once per
failure. ``on_listening`` runs each time it (re)starts listening: what was sent while it
was not is lost, so a user of it looks again there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

__all__ = ["Listener"]

log = logging.getLogger("safeboard.events")

_WAIT = 0.25  # seconds between looks at the stop flag
_RETRY = 2.0  # seconds before reconnecting after a failure


class Listener:
    def __init__(
        self,
        engine: Engine,
        channel: str,
        on_notice: Callable[[str], None],
        *,
        name: str,
        what: str,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        """``channel``: a constant identifier (it is written into the LISTEN statement);
        ``what``: how the log names this listener."""
        if not channel.isidentifier():
            raise ValueError(f"channel {channel!r}: not an identifier")
        self.engine = engine
        self.channel = channel
        self.on_notice = on_notice
        self.on_listening = on_listening
        self.name = name
        self.what = what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001  (reconnect after any failure)
                log.warning("%s lost its connection (%s); retrying", self.what,
                            type(exc).__name__)  # fmt: skip
                self._stop.wait(_RETRY)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None  # noqa: S101
            driver.autocommit = True
            driver.execute(f"LISTEN {self.channel}")
            if self.on_listening is not None:
                self.on_listening()
            while not self._stop.is_set():
                for note in driver.notifies(timeout=_WAIT):
                    self.on_notice(note.payload)
        finally:
            raw.invalidate()  # never hand a LISTENing autocommit connection back to the pool
