"""How a task's end (or its attempt's) changes the task and its run, in the caller's
transaction: one place for the rules that the agent's reports, the reaper and a cancel
share.

- An attempt ends ``succeeded``, ``failed``, ``cancelled`` or ``lost``.
- A lost attempt is retried (the task queued again; its next lease is attempt N+1) while
  the task has had at most ``max_lost_retries`` lost attempts; a failed one only with
  ``retry_on_failure``, within the same bound counted over failed attempts. A cancel
  request wins over both.
- The run follows: ``queued`` while the task waits, ``running`` once its process runs,
  then ``finished`` (succeeded), ``failed`` (failed, lost) or ``killed`` (cancelled). A
  run already given a final status (the task's own SDK finished it) keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.events import Event, EventBus
from safeboard.jobs import repository as tasks
from safeboard.jobs.repository import Task
from safeboard.runs import repository as runs
from safeboard.vocabulary import FINAL_STATUSES, RunStatus, TaskState

__all__ = ["RUN_STATUS_OF", "RunChange", "RunNotices", "end_attempt", "set_run_status"]

SYSTEM_ACTOR = "system:jobs"  # who the audit log names for what the reaper decides

RUN_STATUS_OF = {
    TaskState.SUCCEEDED: RunStatus.FINISHED,
    TaskState.FAILED: RunStatus.FAILED,
    TaskState.LOST: RunStatus.FAILED,
    TaskState.CANCELLED: RunStatus.KILLED,
}


@dataclass(frozen=True)
class RunChange:
    """A run's new status, announced to live views after the commit."""

    project_id: int
    run_id: str
    status: str


class RunNotices:
    """Run status changes for live views (the dashboard): each recorded in the
    transaction that makes it (``EventBus.publish_at_commit``: no transaction of its own),
    handed to this process's streams after the commit (``deliver``)."""

    def __init__(self, events: EventBus | None = None) -> None:
        self.events = events

    def record(self, conn: Connection, change: RunChange | None, into: list[Event]) -> None:
        if change is None or self.events is None:
            return
        event = Event("run", change.project_id, change.run_id, {"status": change.status})
        self.events.publish_at_commit(conn, event)
        into.append(event)

    def deliver(self, recorded: list[Event]) -> None:
        if self.events is not None:
            for event in recorded:
                self.events.publish(event)


def set_run_status(
    conn: Connection, task: Task, status: RunStatus, now: datetime
) -> RunChange | None:
    """Move the task's run to ``status`` unless it already has a final one."""
    # A run in the trash too: its task, cancelled by the delete, ends it "killed".
    run = runs.get(conn, task.run_id, documents=False, trashed=True)
    if run is None or run.status in FINAL_STATUSES or run.status == status.value:
        return None
    ended = now if status in FINAL_STATUSES else None
    runs.update(conn, task.run_id, status=status.value, ended_at=ended)
    return RunChange(task.project_id, task.run_id, status.value)


def end_attempt(
    conn: Connection, task: Task, outcome: TaskState, reason: str, now: datetime
) -> tuple[TaskState, RunChange | None]:
    """The task's current attempt has ended as ``outcome`` (already written on the
    attempt): requeue the task or end it, and revoke the attempt's task token. Returns
    the task's new state and the run's change, if any."""
    tasks.revoke_tokens(conn, task.id, now, attempt=task.attempt)
    if task.cancel_requested_at is not None:
        outcome = TaskState.CANCELLED
    if _retried(conn, task, outcome):
        why = f"attempt {task.attempt} {outcome.value}: {reason}; requeued"
        tasks.update_task(conn, task.id, state=TaskState.QUEUED.value, reason=why[:200])
        return TaskState.QUEUED, set_run_status(conn, task, RunStatus.QUEUED, now)
    tasks.update_task(conn, task.id, state=outcome.value, reason=reason[:200], finished_at=now)
    if outcome is TaskState.LOST:
        audit.append(conn, action=AuditAction.TASK_LOST, actor=SYSTEM_ACTOR,
                     target=f"task:{task.id}", detail={"attempt": task.attempt})  # fmt: skip
    return outcome, set_run_status(conn, task, RUN_STATUS_OF[outcome], now)


def _retried(conn: Connection, task: Task, outcome: TaskState) -> bool:
    if outcome is TaskState.LOST:
        return tasks.count_attempts(conn, task.id, outcome.value) <= task.max_lost_retries
    if outcome is TaskState.FAILED and task.retry_on_failure:
        return tasks.count_attempts(conn, task.id, outcome.value) <= task.max_lost_retries
    return False
