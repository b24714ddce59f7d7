"""Task logs (docs/agents.md, "Logs"): what an attempt's process printed, shipped by its
agent in numbered batches and read (or followed) by whoever may read the task.

Writing. A batch names its task, attempt and ``seq`` (1, 2, ... per attempt) and is
stored under the task's row lock: a batch already stored (a retry) is answered as it was
stored, and the content of the retry is ignored; the next new batch must be the next
number (a gap means lost lines: 409). The attempt's own agent may ship while the attempt
lives and after it ended with an exit (the exit report may overtake the last batch), never
for an attempt whose lease lapsed (lost: 409) or one leased to another agent (404). Past
the task's cap (``jobs.max_log_bytes``, every attempt together) the first part is kept,
the rest counted as dropped and the log marked truncated. No line reaches the audit log.

Following. A read that finds nothing new waits up to ``wait`` seconds (an ``async``
route: the wait holds no thread) for a batch of any task, then looks again: a condition
within this process, and on PostgreSQL ``NOTIFY safeboard_task_logs`` sent by the
storing transaction at its commit, which every replica's listener (jobs/wakeup.py,
pg_listener.py) turns into a wake-up of its followers. Followers also look again every
``FOLLOW_POLL_SECONDS``: the task's end (which sends no notice) is seen within it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import Conflict, InvalidRequest, NotFound
from safeboard.jobs import log_batches as batches
from safeboard.jobs import repository as tasks
from safeboard.jobs.log_batches import LogBatch
from safeboard.jobs.service import TaskService
from safeboard.jobs.wakeup import Wakeup
from safeboard.settings import JobSettings
from safeboard.storage import writer
from safeboard.vocabulary import (
    FINAL_TASK_STATES,
    MAX_LOG_BATCH_BYTES,
    MAX_LOG_BATCH_LINES,
    TaskState,
)

__all__ = ["CHANNEL", "FOLLOW_POLL_SECONDS", "LogLine", "LogPage", "Stored", "TaskLogs"]

CHANNEL = "safeboard_task_logs"
FOLLOW_POLL_SECONDS = 1.0
PAGE_BYTES = 1024 * 1024  # a read returns whole batches, stopping past this many bytes
STREAMS = {"stdout": "o", "stderr": "e"}
_STREAM_OF = {letter: name for name, letter in STREAMS.items()}
_FINAL = {state.value for state in FINAL_TASK_STATES}
_EXITED = {TaskState.SUCCEEDED.value, TaskState.FAILED.value, TaskState.CANCELLED.value}


@dataclass(frozen=True)
class LogLine:
    number: int  # from 1, in the attempt's output
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(frozen=True)
class Stored:
    """A batch as stored (the same answer for a retry)."""

    seq: int
    first_line: int
    lines: int
    dropped: int


@dataclass(frozen=True)
class LogPage:
    task_id: int
    attempt: int  # the attempt these lines are of (0: the task was never leased)
    current_attempt: int  # the task's latest attempt: a follower moves on to it
    state: str  # the task's
    attempt_ended: bool  # nothing more will come for ``attempt`` but a late tail
    lines: list[LogLine]
    next: int  # the cursor: the last batch read (``after`` of the next read)
    truncated: bool  # lines of this attempt were dropped past the task's cap


class TaskLogs:
    def __init__(
        self,
        engine: Engine,
        settings: JobSettings,
        tasks_service: TaskService,
        *,
        clock: Clock = utcnow,
        poll_seconds: float = FOLLOW_POLL_SECONDS,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.settings = settings
        self.tasks = tasks_service
        self.clock = clock
        self.wakeup = Wakeup(engine, poll_seconds=poll_seconds, channel=CHANNEL,
                             name="safeboard-log-wakeup", what="task log listener")  # fmt: skip

    # What the agent writes

    def append(
        self,
        task_id: int,
        attempt: int,
        agent_id: str,
        seq: int,
        lines: Sequence[tuple[str, str]],
    ) -> Stored:
        """Store batch ``seq`` of an attempt's output: ``lines`` as (stream, text)."""
        content = _content(lines)
        with self.tx.begin() as conn:
            self._fence(conn, task_id, attempt, agent_id)
            found = batches.get_batch(conn, task_id, attempt, seq)
            if found is not None:  # a retry: the first one stands
                return _stored(found)
            last = batches.last_batch(conn, task_id, attempt)
            expected = 1 if last is None else last.seq + 1
            if seq != expected:
                raise Conflict(f"log batch {seq} of attempt {attempt} of task {task_id}: "
                               f"the next one is {expected}")  # fmt: skip
            room = self.settings.max_log_bytes - batches.task_bytes(conn, task_id)
            kept, kept_bytes = _fitting(content, room)
            batch = LogBatch(
                task_id=task_id, attempt=attempt, seq=seq,
                first_line=1 if last is None else last.next_line, lines=len(kept),
                dropped=len(content) - len(kept), bytes=kept_bytes, content="\n".join(kept),
                created_at=self.clock(),
            )  # fmt: skip
            batches.insert_batch(conn, batch)
            self.wakeup.notify_at_commit(conn)
        self.wakeup.notify()
        return _stored(batch)

    @staticmethod
    def _fence(conn: Connection, task_id: int, attempt: int, agent_id: str) -> None:
        task = tasks.get_task(conn, task_id, lock=True)
        current = None if task is None else tasks.get_attempt(conn, task_id, attempt)
        if task is None or current is None or current.agent_id != agent_id:
            raise NotFound(f"no attempt {attempt} of task {task_id} leased to this agent")
        if current.state == TaskState.LOST.value:
            raise Conflict(f"attempt {attempt} of task {task_id} is stale: its lease lapsed")
        if task.attempt != attempt and current.state not in _EXITED:
            raise Conflict(f"attempt {attempt} of task {task_id} is stale: "
                           f"the task is at attempt {task.attempt}")  # fmt: skip

    # What users read

    def page(
        self,
        principal: Principal,
        task_id: int,
        *,
        attempt: int | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> LogPage:
        """Lines of the task's ``attempt`` (default: its latest) in the batches after
        ``after``: at most ``limit`` batches, fewer past ``PAGE_BYTES``."""
        detail = self.tasks.get(principal, task_id)  # who may read the task: 404 else
        task = detail.task
        number = task.attempt if attempt is None else attempt
        if attempt is not None and not 1 <= attempt <= task.attempt:
            raise NotFound(f"task {task_id} has no attempt {attempt}")
        ended = task.state in _FINAL or any(
            a.attempt == number and a.state in _FINAL for a in detail.attempts
        )
        with self.engine.connect() as conn:
            found = batches.batches_after(conn, task_id, number, after, max(1, limit))
            cut = batches.truncated(conn, task_id, number) if number else False
        lines: list[LogLine] = []
        cursor, size = after, 0
        for batch in found:
            if lines and size + batch.bytes > PAGE_BYTES:
                break
            lines.extend(_lines(batch))
            cursor, size = batch.seq, size + batch.bytes
        return LogPage(task_id=task_id, attempt=number, current_attempt=task.attempt,
                       state=task.state, attempt_ended=ended, lines=lines, next=cursor,
                       truncated=cut)  # fmt: skip

    async def follow(
        self,
        principal: Principal,
        task_id: int,
        *,
        attempt: int | None = None,
        after: int = 0,
        limit: int = 100,
        wait: float = 0.0,
    ) -> LogPage:
        """``page``, waiting up to ``wait`` seconds (at most ``jobs.max_wait_seconds``)
        while it would be empty and more may come (the task has not ended and no later
        attempt began)."""
        until = time.monotonic() + min(max(0.0, wait), self.settings.max_wait_seconds)
        while True:
            seen = self.wakeup.generation
            found = await asyncio.to_thread(self.page, principal, task_id, attempt=attempt,
                                            after=after, limit=limit)  # fmt: skip
            left = until - time.monotonic()
            moved_on = found.current_attempt != found.attempt
            if found.lines or found.state in _FINAL or moved_on or left <= 0:
                return found
            if self.wakeup.stopped:
                return found
            await self.wakeup.wait_async(seen, left)

    # The PostgreSQL listener, and the server's stop

    def start(self) -> None:
        self.wakeup.start()

    def release(self) -> None:
        """A graceful stop begins: waiting followers answer now (and come back, to this
        server when it is back or to another replica), so the stop need not wait."""
        self.wakeup.release()

    def stop(self) -> None:
        self.wakeup.stop()  # waiting followers answer now


def _content(lines: Sequence[tuple[str, str]]) -> list[str]:
    """Each line as stored: its stream's letter, then its text. Refused (422):
    more than ``MAX_LOG_BATCH_LINES`` lines or ``MAX_LOG_BATCH_BYTES`` bytes, a newline
    in a line, an unknown stream."""
    if len(lines) > MAX_LOG_BATCH_LINES:
        raise InvalidRequest(f"a log batch holds at most {MAX_LOG_BATCH_LINES} lines")
    stored: list[str] = []
    size = 0
    for stream, text in lines:
        letter = STREAMS.get(stream)
        if letter is None:
            raise InvalidRequest("a log line's stream is stdout or stderr")
        if "\n" in text:
            raise InvalidRequest("a log line holds no newline")
        size += len(text.encode())
        stored.append(letter + text)
    if size > MAX_LOG_BATCH_BYTES:
        raise InvalidRequest(f"a log batch holds at most {MAX_LOG_BATCH_BYTES} bytes of text")
    return stored


def _fitting(content: list[str], room: int) -> tuple[list[str], int]:
    """The first lines whose text fits in ``room`` bytes, and their bytes."""
    kept, size = [], 0
    for line in content:
        cost = len(line.encode()) - 1  # the text without its stream's letter
        if size + cost > room:
            break
        kept.append(line)
        size += cost
    return kept, size


def _lines(batch: LogBatch) -> list[LogLine]:
    if not batch.lines:
        return []
    return [LogLine(batch.first_line + i, _STREAM_OF[line[:1]], line[1:])
            for i, line in enumerate(batch.content.split("\n"))]  # fmt: skip


def _stored(batch: LogBatch) -> Stored:
    return Stored(batch.seq, batch.first_line, batch.lines, batch.dropped)
