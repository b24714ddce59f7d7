"""HTTP for reading a task's output (``GET /api/v1/tasks/{id}/logs``): who may read the
task reads its logs, page by page or following them (``wait``: a long-poll that holds no
thread). What agents call to ship them is in agent_routes.py."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import Field

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest
from safeboard.jobs.logs import TaskLogs
from safeboard.jobs.schemas import TaskId
from safeboard.provision import provided
from safeboard.schemas import Model

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
MAX_WAIT_SECONDS = 25.0
QUERY = ("attempt", "after", "limit", "wait")


def _known_query(request: Request) -> None:
    """Unknown query parameters are refused, as unknown body fields are (S17): a mistyped
    ``aftr=`` would otherwise read from the start."""
    if set(request.query_params) - set(QUERY):
        raise InvalidRequest(f"unknown query parameter: {', '.join(QUERY)} are known")


class LogLineOut(Model):
    n: int = Field(description="The line's number in the attempt's output, from 1.")
    stream: str = Field(description="stdout or stderr.")
    text: str


class LogPageOut(Model):
    task_id: int
    attempt: int = Field(description="The attempt these lines are of (0: never leased).")
    current_attempt: int = Field(description="The task's latest attempt.")
    state: str = Field(description="The task's state.")
    attempt_ended: bool = Field(description="The attempt has ended: nothing more will come.")
    lines: list[LogLineOut]
    next: int = Field(description="Pass as ``after`` to read on.")
    truncated: bool = Field(description="Lines were dropped past the task's log cap.")


@router.get("/tasks/{task_id}/logs", response_model=LogPageOut)
async def task_logs(
    request: Request,
    task_id: TaskId,
    *,
    attempt: int | None = Query(None, ge=1, le=2**31 - 1, description="Default: the latest."),
    after: int = Query(0, ge=0, le=2**31 - 1, description="The ``next`` of the last read."),
    limit: int = Query(100, ge=1, le=1000, description="Batches (up to 1,000 lines each)."),
    wait: float = Query(
        0.0, ge=0, le=MAX_WAIT_SECONDS, description="Wait this long for lines while the task runs."
    ),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    logs: TaskLogs = provided(TaskLogs),
) -> LogPageOut:
    """The attempt's output after ``after``, oldest first; with ``wait``, a long-poll
    that answers as soon as lines come (or the task ends, or a new attempt begins)."""
    _known_query(request)  # after the credential's check: a stranger learns nothing
    page = await logs.follow(principal, task_id, attempt=attempt, after=after, limit=limit,
                             wait=wait)  # fmt: skip
    return LogPageOut(
        task_id=page.task_id, attempt=page.attempt, current_attempt=page.current_attempt,
        state=page.state, attempt_ended=page.attempt_ended,
        lines=[LogLineOut(n=x.number, stream=x.stream, text=x.text) for x in page.lines],
        next=page.next, truncated=page.truncated,
    )  # fmt: skip
