"""HTTP for users' tasks: submit to a project, list, show, cancel, retry. (What agents
call, under ``/api/v1/agent/...``, needs the agent credential: wired with enrollment.)"""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.status import HTTP_201_CREATED

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.jobs.schemas import (
    MAX_TASK_ID,
    AttemptOut,
    RunAgain,
    TaskId,
    TaskListOut,
    TaskOut,
    TaskSubmit,
)
from safeboard.jobs.service import Rerun, TaskDetail, TaskService
from safeboard.jobs.spec import TaskSpec
from safeboard.provision import provided
from safeboard.vocabulary import TaskState

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
STATES = len(TaskState)


def task_out(detail: TaskDetail) -> TaskOut:
    t = detail.task
    return TaskOut(
        id=t.id, project=detail.project, run_id=t.run_id, state=t.state, command=t.command,
        env=t.env, gpus=t.gpus, labels=t.labels, priority=t.priority,
        max_seconds=t.max_seconds, max_lost_retries=t.max_lost_retries,
        retry_on_failure=t.retry_on_failure, attempt=t.attempt,
        cancel_requested_by=t.cancel_requested_by, retry_of=t.retry_of, reason=t.reason,
        created_at=t.created_at, finished_at=t.finished_at,
        attempts=[AttemptOut(attempt=a.attempt, agent_id=a.agent_id, gpu_uuids=a.gpu_uuids,
                             state=a.state, leased_at=a.leased_at,
                             lease_expires_at=a.lease_expires_at, started_at=a.started_at,
                             ended_at=a.ended_at, exit_code=a.exit_code, signal=a.signal,
                             reason=a.reason) for a in detail.attempts],
        code_sha256=t.code_sha256,
        secret_names=detail.secret_names,
        params=t.params,
        waiting_reason=detail.waiting_reason,
    )  # fmt: skip


@router.post("/projects/{project}/tasks", status_code=HTTP_201_CREATED, response_model=TaskOut)
def submit_task(
    project: str,
    body: TaskSubmit,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TaskService = provided(TaskService),
) -> TaskOut:
    """Queue a task; its run exists at once (status ``queued``), so it can be followed."""
    spec = TaskSpec(command=body.command, env=body.env, gpus=body.gpus, labels=body.labels,
                    priority=body.priority, max_seconds=body.max_seconds,
                    max_lost_retries=body.max_lost_retries,
                    retry_on_failure=body.retry_on_failure, name=body.name,
                    code_sha256=body.code_sha256, secrets=body.secrets,
                    params=body.params)  # fmt: skip
    return task_out(service.submit(principal, project, spec))


@router.get("/tasks", response_model=TaskListOut)
def list_tasks(
    project: str | None = Query(None, max_length=100),
    state: list[TaskState] | None = Query(None, max_length=STATES),
    before: int | None = Query(None, ge=1, le=MAX_TASK_ID),
    limit: int = Query(100, ge=1, le=500),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TaskService = provided(TaskService),
) -> TaskListOut:
    """Tasks newest first: of ``project``, or of every project you can read; in the
    ``state``s given (repeat for more)."""
    found = service.listed(principal, project=project, states=[s.value for s in state or []],
                           before=before, limit=limit)  # fmt: skip
    more = len(found) == limit
    return TaskListOut(tasks=[task_out(d) for d in found],
                       next_before=found[-1].task.id if more and found else None)  # fmt: skip


@router.get("/tasks/{task_id}", response_model=TaskOut)
def show_task(
    task_id: TaskId,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TaskService = provided(TaskService),
) -> TaskOut:
    """The task with its attempts (agent, GPUs, lease, exit)."""
    return task_out(service.get(principal, task_id))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
def cancel_task(
    task_id: TaskId,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TaskService = provided(TaskService),
) -> TaskOut:
    """Queued: cancelled at once. Leased or running: ``cancelling`` until the agent has
    stopped the process (it hears of it at its next heartbeat)."""
    return task_out(service.cancel(principal, task_id))


@router.post("/tasks/{task_id}/retry", status_code=HTTP_201_CREATED, response_model=TaskOut)
def retry_task(
    task_id: TaskId,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TaskService = provided(TaskService),
) -> TaskOut:
    """A finished task again, as a new task with a new run (``retry_of`` names the old)."""
    return task_out(service.retry(principal, task_id))


@router.post("/tasks/{task_id}/run-again", status_code=HTTP_201_CREATED, response_model=TaskOut)
def run_again(
    task_id: TaskId,
    body: RunAgain,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TaskService = provided(TaskService),
) -> TaskOut:
    """A new task with this one's code snapshot, env and secrets, and the command,
    parameter overrides and resources given (the dashboard's "Run again"). Parameters
    must keep the kind of value the task's run received (422 otherwise)."""
    edits = Rerun(command=body.command, params=body.params, gpus=body.gpus, labels=body.labels,
                  priority=body.priority, max_seconds=body.max_seconds, name=body.name)  # fmt: skip
    return task_out(service.run_again(principal, task_id, edits))
