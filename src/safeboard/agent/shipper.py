"""Ships an attempt's log file (agent/output.py: the spool) to the server in numbered
batches: at most ``BATCH_LINES`` lines or ``BATCH_BYTES`` bytes, sent once a line has
waited ``BATCH_SECONDS`` (or at once when a batch is full).

Batch ``seq`` (1, 2, ... per attempt) is sent until the server answers: the same seq with
the same lines, so a retry after a lost answer is stored once (the server keeps the
first). While the server cannot be reached the file keeps growing and nothing is lost;
the shipper retries with backoff (``Retry-After`` honoured) and catches up from its last
acknowledged position when the server is back. That position, ``(seq, byte offset)``,
is written beside the log (``task-<id>.<attempt>.ack``, 0600) after each answer, so a
shipper started again on the same file (an agent restarted) neither sends a line twice
nor skips one.

It stops for good when the server refuses the attempt (409 stale, 404 not this agent's:
the lines stay in the file), when the task's log cap is reached (``truncated``), when
the agent is revoked, or when ``finish``'s deadline passes with lines unsent."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from safeboard.agent.output import Spool, parse_line
from safeboard.client import Client
from safeboard.client.retry import RetryPolicy
from safeboard.client.task_logs import LogAck
from safeboard.errors import (
    Conflict,
    NotFound,
    RateLimited,
    SafeboardError,
    ServiceUnavailable,
    Unauthenticated,
)
from safeboard.vocabulary import MAX_LOG_LINE_BYTES

__all__ = ["BATCH_BYTES", "BATCH_LINES", "BATCH_SECONDS", "Shipper"]

BATCH_LINES = 1000
BATCH_BYTES = 256 * 1024
BATCH_SECONDS = 1.0
_BACKOFF = RetryPolicy(base=0.5, cap=10.0, retry_after_cap=60.0)


class Shipper(threading.Thread):
    def __init__(
        self,
        spool: Spool,
        *,
        task_id: int,
        attempt: int,
        connect: Callable[[], Client],
        say: Callable[[str], None],
        refused: Callable[[Unauthenticated], None],
        hard_stop: threading.Event,
        label: str,
    ) -> None:
        super().__init__(name=f"{label} logs", daemon=True)
        self.spool = spool
        self.task_id = task_id
        self.attempt = attempt
        self._connect = connect
        self._say = say
        self._refused = refused
        self._hard_stop = hard_stop
        self.label = label
        self.ack_path = spool.path.with_suffix(".ack")
        self.seq, self.offset = self._acknowledged()
        self._deadline: float | None = None  # set by finish: ship what is left, then end
        self._abandoned = threading.Event()
        self.done = False  # every line written was acknowledged

    # What the attempt calls

    def finish(self, patience: float) -> bool:
        """Ship what the file holds now and end, within ``patience`` seconds. True when
        every line was acknowledged (or the server said to send no more)."""
        self._deadline = time.monotonic() + patience
        self.spool.changed.set()
        self.join(patience + 1.0)
        return self.done

    def abandon(self) -> None:
        """Ship nothing more (the attempt was taken away)."""
        self._abandoned.set()
        self.spool.changed.set()

    # The thread

    def run(self) -> None:
        try:
            with self._connect() as client:
                self._ship(client)
        except Exception as exc:  # noqa: BLE001  (one line for the person, never a traceback)
            self._say(f"{self.label}: stopped shipping its output: {exc!r}; it stays in "
                      f"{self.spool.path}")  # fmt: skip

    def _ship(self, client: Client) -> None:
        waiting_since: float | None = None  # when the oldest unsent line was seen
        shipped_lines = 0
        while not self._abandoned.is_set():
            pending = self.spool.size - self.offset
            if pending <= 0:
                if self._deadline is not None:
                    self.done = True
                    return
                waiting_since = None
                self._wait(BATCH_SECONDS)
                continue
            now = time.monotonic()
            waiting_since = waiting_since or now
            full = pending >= BATCH_BYTES or self.spool.lines - shipped_lines >= BATCH_LINES
            due = waiting_since + BATCH_SECONDS
            if not full and self._deadline is None and now < due:
                self._wait(due - now)
                continue
            lines, consumed = self._read()
            if not lines:  # a line still being written
                self._wait(0.05)
                continue
            ack = self._send(client, self.seq + 1, lines)
            if ack is None:
                return
            self.seq, self.offset = self.seq + 1, self.offset + consumed
            shipped_lines += len(lines)
            self._save()
            waiting_since = None if self.spool.size <= self.offset else now
            if ack.truncated:
                where = self.spool.path
                self._say(f"{self.label}: the server keeps no more of its output (the "
                          f"task's log is at its cap); all of it is in {where}")  # fmt: skip
                self.done = True
                return

    def _wait(self, seconds: float) -> None:
        self.spool.changed.wait(seconds)
        self.spool.changed.clear()

    def _read(self) -> tuple[list[tuple[str, str]], int]:
        """Whole lines from the acknowledged offset: at most a batch; the bytes they take."""
        with self.spool.path.open("rb") as file:
            file.seek(self.offset)
            data = file.read(BATCH_BYTES + MAX_LOG_LINE_BYTES + 1024)
        lines: list[tuple[str, str]] = []
        consumed = 0
        for raw in data.split(b"\n")[:-1]:  # the last piece has no newline yet
            if lines and (len(lines) >= BATCH_LINES or consumed + len(raw) + 1 > BATCH_BYTES):
                break
            lines.append(parse_line(raw))
            consumed += len(raw) + 1
        return lines, consumed

    def _send(self, client: Client, seq: int, lines: list[tuple[str, str]]) -> LogAck | None:
        failures = 0
        while not self._abandoned.is_set():
            try:
                ack = client.ship_logs(self.task_id, self.attempt, seq, lines)
            except (Conflict, NotFound) as exc:
                self._say(f"{self.label}: the server refused its output ({exc.message}); it "
                          f"stays in {self.spool.path}")  # fmt: skip
                return None
            except Unauthenticated as exc:
                self._refused(exc)
                return None
            except (ServiceUnavailable, RateLimited) as exc:
                failures += 1
                late = self._deadline is not None and time.monotonic() >= self._deadline
                if late or self._hard_stop.is_set():
                    self._say(f"{self.label}: gave up shipping its output ({exc.message}); it "
                              f"stays in {self.spool.path}")  # fmt: skip
                    return None
                if failures == 1:
                    self._say(f"{self.label}: cannot ship its output ({exc.message}); kept in "
                              f"{self.spool.path}, retrying")  # fmt: skip
                self._abandoned.wait(_BACKOFF.delay(failures, exc))
                continue
            except SafeboardError as exc:
                self._say(f"{self.label}: the server refused its output ({exc.message}); it "
                          f"stays in {self.spool.path}")  # fmt: skip
                return None
            if failures:
                self._say(f"{self.label}: shipping its output again")
            return ack
        return None

    # The acknowledged position, beside the log

    def _acknowledged(self) -> tuple[int, int]:
        try:
            found = json.loads(self.ack_path.read_text())
            seq, offset = int(found["seq"]), int(found["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0
        if seq < 0 or not 0 <= offset <= self.spool.size:
            return 0, 0
        return seq, offset

    def _save(self) -> None:
        temporary = self.ack_path.with_suffix(".ack.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"seq": self.seq, "offset": self.offset}, file)
        temporary.replace(self.ack_path)
