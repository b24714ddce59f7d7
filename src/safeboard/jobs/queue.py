"""The queue as agents use it: lease a task that fits, renew the lease by heartbeat,
report the process's start and exit. Every call names the agent (``agent_id``, from its
credential) and, after the lease, the attempt: a call for an attempt that is not the
task's current live one is refused with Conflict (409), so a process that comes back
after a network split cannot change the retried task (fencing).

Claims: the highest-priority, oldest queued task whose GPUs fit the agent's free ones
and whose labels are all among the agent's, in one write transaction (SQLite: BEGIN
IMMEDIATE, one writer at a time; PostgreSQL: ``FOR UPDATE SKIP LOCKED``). A lease
request with nothing to take waits up to ``wait_seconds`` for a submit (wakeup.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from safeboard.agents.queries import REVOKED, is_revoked
from safeboard.auth.identity import unauthenticated
from safeboard.clock import Clock, utcnow
from safeboard.errors import AgentRevoked, Conflict, InvalidRequest, NotFound
from safeboard.events import Event
from safeboard.jobs import repository as tasks
from safeboard.jobs.lifecycle import RunChange, RunNotices, end_attempt, set_run_status
from safeboard.jobs.repository import LIVE_STATES, Attempt, Task
from safeboard.jobs.spec import MAX_SECONDS
from safeboard.jobs.task_secrets import SecretsUnreadable, TaskSecrets
from safeboard.jobs.tokens import TaskTokens
from safeboard.jobs.wakeup import Wakeup
from safeboard.settings import JobSettings
from safeboard.storage import writer
from safeboard.vocabulary import FINAL_TASK_STATES, RunStatus, TaskState

__all__ = ["AgentEvent", "Beat", "Lease", "TaskQueue"]

_PAGE = 50  # queued tasks weighed per query when labels rule some out
_FINAL = {state.value for state in FINAL_TASK_STATES}
_LIVE = {state.value for state in LIVE_STATES}


@dataclass(frozen=True)
class Lease:
    """What an agent needs to run one attempt of a task."""

    task_id: int
    attempt: int
    project_id: int
    run_id: str
    command: list[str]
    env: dict[str, str]
    gpu_uuids: list[str]
    lease_expires_at: datetime
    deadline: datetime | None  # the task's maximum duration, from this lease
    max_seconds: int | None = None
    # This attempt's task token (jobs/tokens.py), for the task's process alone: the only
    # time it exists in clear. Never in a repr.
    task_token: str = field(default="", repr=False)
    code_sha256: str | None = None  # the task's code archive (code_routes.py serves it)
    # The task's secrets in clear, for the task's environment only. Never in a repr.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    params: dict[str, Any] = field(default_factory=dict)  # overrides for init(config=)


@dataclass(frozen=True)
class Beat:
    """A heartbeat's answer: the renewed lease, and whether to stop the process."""

    lease_expires_at: datetime
    cancel: bool
    deadline: datetime | None


@dataclass(frozen=True)
class AgentEvent:
    kind: Literal["starting", "running", "exited"]
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    # Why the command was not run (the agent could not prepare its code), or that the
    # agent stopped it (drain): the reason of a failed exit.
    reason: str = ""


class TaskQueue:
    def __init__(
        self,
        engine: Engine,
        settings: JobSettings,
        wakeup: Wakeup,
        *,
        clock: Clock = utcnow,
        notices: RunNotices | None = None,
        tokens: TaskTokens | None = None,
        secrets: TaskSecrets | None = None,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.settings = settings
        self.wakeup = wakeup
        self.clock = clock
        self.notices = notices or RunNotices()
        self.tokens = tokens or TaskTokens(engine, clock=clock)  # one per attempt (S14)
        self.secrets = secrets or TaskSecrets(engine, None)  # opened for the lease only

    @property
    def lease_time(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    # Leasing

    def lease(
        self,
        agent_id: str,
        free_gpus: Sequence[str],
        labels: Sequence[str],
        wait_seconds: float = 0.0,
    ) -> Lease | None:
        """A task for this agent, or None after waiting up to ``wait_seconds`` (at most
        ``jobs.max_wait_seconds``) for one."""
        wait = min(max(wait_seconds, 0.0), self.settings.max_wait_seconds)
        until = time.monotonic() + wait
        while True:
            seen = self.wakeup.generation
            lease = self._claim(agent_id, list(dict.fromkeys(free_gpus)), set(labels))
            left = until - time.monotonic()
            if lease is not None or left <= 0 or self.wakeup.stopped:
                return lease
            self.wakeup.wait(seen, left)

    async def lease_async(
        self,
        agent_id: str,
        free_gpus: Sequence[str],
        labels: Sequence[str],
        wait_seconds: float = 0.0,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> Lease | None:
        """``lease`` for an async route: each claim runs in a worker thread (a short
        transaction), the wait between claims on the event loop, so agents that wait hold
        no thread (a thread each would soon exhaust the server's pool). ``gone``: whether
        the agent hung up (an idle agent stopped): then None without a claim, so that no
        task is leased to an agent that cannot hear of it and waits for the lease to lapse."""
        wait = min(max(wait_seconds, 0.0), self.settings.max_wait_seconds)
        until = time.monotonic() + wait
        free, wanted = list(dict.fromkeys(free_gpus)), set(labels)
        while True:
            seen = self.wakeup.generation
            if gone is not None and await gone():
                return None
            lease = await asyncio.to_thread(self._claim, agent_id, free, wanted)
            left = until - time.monotonic()
            if lease is not None or left <= 0 or self.wakeup.stopped:
                return lease
            await self.wakeup.wait_async(seen, left)

    def _claim(self, agent_id: str, free: list[str], labels: set[str]) -> Lease | None:
        recorded: list[Event] = []
        try:
            return self._claim_one(agent_id, free, labels, recorded)
        finally:
            self.notices.deliver(recorded)  # tasks failed for unreadable secrets

    def _claim_one(
        self, agent_id: str, free: list[str], labels: set[str], recorded: list[Event]
    ) -> Lease | None:
        with self.tx.begin() as conn:
            # Revoked while its long-poll waited: no task for it (the row lock orders this
            # claim and a revocation, whose end_agent_attempts then sees this lease).
            if is_revoked(conn, agent_id):
                raise unauthenticated(REVOKED, AgentRevoked)
            held = tasks.held_gpus(conn, agent_id)
            free = [uuid for uuid in free if uuid not in held]
            picked = self._next_openable(conn, len(free), labels, recorded)
            if picked is None:
                return None
            task, secrets = picked
            now = self.clock()
            number = task.attempt + 1
            attempt = Attempt(
                task_id=task.id,
                attempt=number,
                agent_id=agent_id,
                gpu_uuids=free[: task.gpus],
                state=TaskState.LEASED.value,
                leased_at=now,
                lease_expires_at=now + self.lease_time,
            )
            tasks.update_task(conn, task.id, state=TaskState.LEASED.value, attempt=number)
            tasks.insert_attempt(conn, attempt)
            # Earlier attempts' tokens are dead already; this makes sure (fencing).
            self.tokens.revoke(conn, task.id, now)
            token = self.tokens.issue(
                conn, task.id, number, run_id=task.run_id, project_id=task.project_id,
                expires_at=now + timedelta(seconds=task.max_seconds or MAX_SECONDS),
            )  # fmt: skip
        return Lease(
            task_id=task.id,
            attempt=number,
            project_id=task.project_id,
            run_id=task.run_id,
            command=task.command,
            env=task.env,
            gpu_uuids=attempt.gpu_uuids,
            lease_expires_at=attempt.lease_expires_at,
            deadline=_deadline(task, attempt),
            task_token=token,
            max_seconds=task.max_seconds,
            code_sha256=task.code_sha256,
            secrets=secrets,
            params=task.params,
        )

    def _next_openable(
        self, conn: Connection, free: int, labels: set[str], recorded: list[Event]
    ) -> tuple[Task, dict[str, str]] | None:
        """The next fitting task and its secrets in clear. One whose secrets this server
        cannot decrypt (its key was replaced) fails now, with the reason on the task, and
        the next one is looked at: a lease never fails for the agent."""
        while True:
            task = self._next_fitting(conn, free, labels)
            if task is None:
                return None
            try:
                return task, self.secrets.reveal(conn, task.id)
            except SecretsUnreadable as exc:
                now = self.clock()
                reason = f"its secrets cannot be decrypted: {exc.message}"
                tasks.update_task(conn, task.id, state=TaskState.FAILED.value,
                                  reason=reason[:200], finished_at=now)  # fmt: skip
                change = set_run_status(conn, task, RunStatus.FAILED, now)
                self.notices.record(conn, change, recorded)

    @staticmethod
    def _next_fitting(conn: Connection, free: int, labels: set[str]) -> Task | None:
        offset = 0
        while True:
            page = tasks.queued_candidates(conn, max_gpus=free, offset=offset, limit=_PAGE)
            for candidate in page:
                if set(candidate.labels) <= labels:
                    task = tasks.lock_if_queued(conn, candidate.id)
                    if task is not None:
                        return task
            if len(page) < _PAGE:
                return None
            offset += _PAGE

    # Heartbeats and reports: fenced by the attempt

    def heartbeat(self, task_id: int, attempt: int, agent_id: str) -> Beat:
        """Renew the attempt's lease; the answer says whether to stop (a cancel asked for,
        or the task's maximum duration passed)."""
        with self.tx.begin() as conn:
            task, current = self._fenced(conn, task_id, attempt, agent_id)
            if current.state not in _LIVE:
                raise Conflict(f"attempt {attempt} of task {task_id} has ended")
            now = self.clock()
            expires = now + self.lease_time
            tasks.update_attempt(conn, task_id, attempt, lease_expires_at=expires)
        deadline = _deadline(task, current)
        overdue = deadline is not None and now >= deadline
        return Beat(expires, task.cancel_requested_at is not None or overdue, deadline)

    def report(self, task_id: int, attempt: int, agent_id: str, event: AgentEvent) -> str:
        """The attempt's process is starting, running (``pid``) or exited (``exit_code``
        or ``signal``). Idempotent: a repeat, or a late start after the exit, changes
        nothing. Returns the task's state after it."""
        _check(event)
        recorded: list[Event] = []
        with self.tx.begin() as conn:
            task, current = self._fenced(conn, task_id, attempt, agent_id)
            if current.state in _FINAL:
                return task.state
            now = self.clock()
            change: RunChange | None = None
            if event.kind == "exited":
                state, change = self._exited(conn, task, current, event, now)
            else:
                state = self._progress(conn, task, current, event, now)
                if event.kind == "running":
                    change = set_run_status(conn, task, RunStatus.RUNNING, now)
            self.notices.record(conn, change, recorded)
            if state == TaskState.QUEUED.value:  # retried after a failure
                self.wakeup.notify_at_commit(conn)
        if state == TaskState.QUEUED.value:
            self.wakeup.notify()
        self.notices.deliver(recorded)
        return state

    def _progress(
        self, conn: Connection, task: Task, current: Attempt, event: AgentEvent, now: datetime
    ) -> str:
        order = [TaskState.LEASED.value, TaskState.STARTING.value, TaskState.RUNNING.value]
        if current.state not in order or order.index(current.state) >= order.index(event.kind):
            return task.state  # a repeat, or a start arriving after the process ran
        values: dict[str, object] = {"state": event.kind,
                                     "lease_expires_at": now + self.lease_time}  # fmt: skip
        if current.started_at is None:
            values["started_at"] = now
        if event.kind == "running":
            values["pid"] = event.pid
        tasks.update_attempt(conn, task.id, current.attempt, **values)
        if task.state == TaskState.CANCELLING.value:
            return task.state  # stays cancelling until the exit is reported
        tasks.update_task(conn, task.id, state=event.kind)
        return event.kind

    def _exited(
        self, conn: Connection, task: Task, current: Attempt, event: AgentEvent, now: datetime
    ) -> tuple[str, RunChange | None]:
        deadline = _deadline(task, current)
        if event.signal is not None:
            outcome, reason = TaskState.FAILED, f"killed by signal {event.signal}"
        elif event.exit_code == 0:
            outcome, reason = TaskState.SUCCEEDED, "exit code 0"
        else:
            outcome, reason = TaskState.FAILED, f"exit code {event.exit_code}"
        if event.reason and outcome is TaskState.FAILED:
            reason = event.reason
        if outcome is TaskState.FAILED and deadline is not None and now >= deadline:
            reason = f"maximum duration ({task.max_seconds} s) passed; {reason}"
        if task.cancel_requested_at is not None:
            outcome, reason = TaskState.CANCELLED, f"cancelled by {task.cancel_requested_by}"
        tasks.update_attempt(conn, task.id, current.attempt, state=outcome.value, ended_at=now,
                             exit_code=event.exit_code, signal=event.signal,
                             reason=reason[:200])  # fmt: skip
        state, change = end_attempt(conn, task, outcome, reason, now)
        return state.value, change

    @staticmethod
    def _fenced(
        conn: Connection, task_id: int, attempt: int, agent_id: str
    ) -> tuple[Task, Attempt]:
        """The task (locked) and its attempt ``attempt``, if that is the task's current
        attempt, leased to this agent, and not lost; else NotFound (not this agent's) or
        Conflict (stale)."""
        task = tasks.get_task(conn, task_id, lock=True)
        current = None if task is None else tasks.get_attempt(conn, task_id, attempt)
        if task is None or current is None or current.agent_id != agent_id:
            raise NotFound(f"no attempt {attempt} of task {task_id} leased to this agent")
        if task.attempt != attempt:
            raise Conflict(f"attempt {attempt} of task {task_id} is stale: "
                           f"the task is at attempt {task.attempt}")  # fmt: skip
        if current.state == TaskState.LOST.value:
            raise Conflict(f"attempt {attempt} of task {task_id} is stale: its lease lapsed")
        return task, current

    # A revoked agent's work

    def end_agent_attempts(
        self, conn: Connection, agent_id: str, now: datetime
    ) -> Callable[[], None]:
        """The agent was revoked (in the caller's transaction): each of its live attempts
        ends ``lost`` now, not when its lease lapses, and its task is requeued for another
        agent under the retry policy (a task being cancelled ends ``cancelled``); the
        attempts' task tokens die with them. Returns the wake-ups and notices to send
        after the commit (``AgentService``'s ``on_revoked``)."""
        recorded: list[Event] = []
        requeued = False
        reason = "its agent was revoked by an admin"
        for task_id, number in tasks.live_attempts_of(conn, agent_id):
            task = tasks.get_task(conn, task_id, lock=True)
            current = None if task is None else tasks.get_attempt(conn, task_id, number)
            if task is None or current is None or task.attempt != number:
                continue
            if current.state not in _LIVE:
                continue
            tasks.update_attempt(conn, task_id, number, state=TaskState.LOST.value,
                                 ended_at=now, reason=reason)  # fmt: skip
            state, change = end_attempt(conn, task, TaskState.LOST, reason, now)
            requeued = requeued or state is TaskState.QUEUED
            self.notices.record(conn, change, recorded)
        if requeued:
            self.wakeup.notify_at_commit(conn)

        def after_commit() -> None:
            if requeued:
                self.wakeup.notify()
            self.notices.deliver(recorded)

        return after_commit

    # The reaper's pass

    def reap(self, limit: int = 100) -> int:
        """Mark live attempts whose lease lapsed ``lost`` and requeue or end their tasks.
        Safe on several replicas at once: each task is taken under its row lock (SKIP
        LOCKED: one another replica holds is left to it) and re-checked. Returns how
        many attempts it marked lost."""
        lost = 0
        requeued = False
        recorded: list[Event] = []
        with self.tx.begin() as conn:
            now = self.clock()
            for task_id, number in tasks.expired_attempts(conn, now, limit):
                task = tasks.lock_task_if_free(conn, task_id)
                current = None if task is None else tasks.get_attempt(conn, task_id, number)
                if task is None or current is None or task.attempt != number:
                    continue
                if current.state not in _LIVE or current.lease_expires_at >= now:
                    continue  # renewed or ended meanwhile
                reason = f"lease lapsed (no heartbeat for {self.settings.lease_seconds} s)"
                tasks.update_attempt(conn, task_id, number, state=TaskState.LOST.value,
                                     ended_at=now, reason=reason)  # fmt: skip
                state, change = end_attempt(conn, task, TaskState.LOST, reason, now)
                lost += 1
                requeued = requeued or state is TaskState.QUEUED
                self.notices.record(conn, change, recorded)
            if requeued:
                self.wakeup.notify_at_commit(conn)
        if requeued:
            self.wakeup.notify()
        self.notices.deliver(recorded)
        return lost


def _check(event: AgentEvent) -> None:
    """An event that says what it must: refused before the task is looked at."""
    if event.kind not in ("starting", "running", "exited"):
        raise InvalidRequest("event: starting, running or exited")
    if event.kind == "running" and (event.pid is None or not 0 < event.pid < 2**31):
        raise InvalidRequest("running: the process id (pid) is required")
    if event.kind == "exited":
        if (event.exit_code is None) == (event.signal is None):
            raise InvalidRequest("exited: an exit code or a signal, not both")
        if event.exit_code is not None and not -(2**31) <= event.exit_code < 2**31:
            raise InvalidRequest("exited: an exit code within 32 bits")
        if event.signal is not None and not 0 < event.signal < 128:
            raise InvalidRequest("exited: a signal number 1 to 127")


def _deadline(task: Task, attempt: Attempt) -> datetime | None:
    if task.max_seconds is None:
        return None
    return attempt.leased_at + timedelta(seconds=task.max_seconds)
