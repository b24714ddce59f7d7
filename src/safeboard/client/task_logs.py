"""A task's output through the typed client (docs/agents.md, "Logs"): an agent ships
numbered batches of lines (``ship_logs``), a user reads or follows them (``task_logs``).
``Client`` takes these methods from ``TaskLogCalls``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from safeboard.client import paths
from safeboard.client.retry import RetryPolicy
from safeboard.errors import ServiceUnavailable
from safeboard.vocabulary import FINAL_TASK_STATES

if TYPE_CHECKING:
    import httpx

__all__ = ["LogAck", "LogLine", "LogPage", "TaskLogCalls"]

FOLLOW_WAIT = 20.0  # seconds each long-poll of a follow waits for lines (the server: 25)
_AWAY = RetryPolicy(base=0.5, cap=5.0)  # a follow's reads while the server is away
_FINAL = {state.value for state in FINAL_TASK_STATES}


@dataclass(frozen=True)
class LogAck:
    """A batch as the server stored it (the same answer for a retry)."""

    seq: int
    first_line: int
    lines: int
    dropped: int
    truncated: bool  # the task's cap is reached: send no more


@dataclass(frozen=True)
class LogLine:
    attempt: int
    number: int  # from 1 in the attempt's output
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(frozen=True)
class LogPage:
    task_id: int
    attempt: int
    current_attempt: int
    state: str
    attempt_ended: bool
    lines: list[LogLine]
    next: int
    truncated: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LogPage:
        attempt = int(d["attempt"])
        lines = [LogLine(attempt, int(x["n"]), str(x["stream"]), str(x["text"]))
                 for x in d["lines"]]  # fmt: skip
        return cls(int(d["task_id"]), attempt, int(d["current_attempt"]), str(d["state"]),
                   bool(d["attempt_ended"]), lines, int(d["next"]),
                   bool(d["truncated"]))  # fmt: skip


class TaskLogCalls:
    """The task-log methods of ``Client``."""

    if TYPE_CHECKING:

        def send(
            self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
        ) -> httpx.Response: ...

    def ship_logs(
        self, task_id: int, attempt: int, seq: int, lines: Sequence[tuple[str, str]]
    ) -> LogAck:
        """Batch ``seq`` (1, 2, ... per attempt) of an attempt's output, ``lines`` as
        (stream, text), with the agent's credential. Idempotent: a retry of a stored batch
        gets the same answer, so it is retried under the client's policy."""
        body = {"seq": seq, "lines": [{"stream": s, "text": t} for s, t in lines]}
        found = self.send("POST", paths.agent_task_logs(task_id, attempt), json=body,
                          idempotent=True).json()  # fmt: skip
        return LogAck(int(found["seq"]), int(found["first_line"]), int(found["lines"]),
                      int(found["dropped"]), bool(found["truncated"]))  # fmt: skip

    def task_log_page(
        self,
        task_id: int,
        *,
        attempt: int | None = None,
        after: int = 0,
        limit: int = 100,
        wait: float = 0.0,
    ) -> LogPage:
        """One read of a task's output: lines of ``attempt`` (default: the latest) in the
        batches after ``after``; ``wait``: a long-poll of up to that many seconds."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if attempt is not None:
            params["attempt"] = attempt
        if wait:
            params["wait"] = wait
        response = self.send("GET", paths.task_logs(task_id), params=params,
                             timeout=wait + 30.0)  # fmt: skip
        return LogPage.from_json(response.json())

    def task_logs(
        self,
        task_id: int,
        *,
        attempt: int | None = None,
        follow: bool = False,
        on_away: Callable[[ServiceUnavailable | None], None] | None = None,
    ) -> Iterator[LogLine]:
        """Every line of a task's attempt (default: the latest), in order: those stored
        now, or with ``follow`` as they come until the attempt ends; without an
        ``attempt``, a follow then moves on to the task's next attempt (a retry: the lines'
        ``attempt`` says so) and ends with the task.

        A follow rides through a server restart, as the agent and the SDK do: while no
        server answers (or a proxy answers 502/503), the same read is tried again with
        backoff; ``on_away(error)`` is called when that begins and ``on_away(None)`` when
        the server answers again. The cursor moves only with an answer, so no line is
        skipped or repeated. A read without ``follow`` raises at once."""
        pinned = attempt is not None
        after = 0
        while True:
            wait = FOLLOW_WAIT if follow else 0.0
            read = partial(self.task_log_page, task_id, attempt=attempt, after=after, wait=wait)
            page = _through_restarts(read, on_away) if follow else read()
            if attempt is None and page.attempt:
                attempt = page.attempt  # the cursor is this attempt's: read it to its end
            yield from page.lines
            if page.next != after:
                after = page.next
                continue
            if not follow:
                return
            if page.attempt_ended:
                if not pinned and page.current_attempt > page.attempt:
                    attempt, after = page.current_attempt, 0  # its retry: follow that one
                    continue
                if pinned or page.state in _FINAL:
                    return
            time.sleep(0.5)  # an answer at once with nothing new (a stopping server)


def _through_restarts(
    read: Callable[[], LogPage], on_away: Callable[[ServiceUnavailable | None], None] | None
) -> LogPage:
    """``read()``, tried again with backoff while the server is away or unavailable."""
    failures = 0
    while True:
        try:
            page = read()
        except ServiceUnavailable as exc:
            failures += 1
            if failures == 1 and on_away is not None:
                on_away(exc)
            time.sleep(_AWAY.delay(failures, exc))
            continue
        if failures and on_away is not None:
            on_away(None)
        return page
