"""HTTP for agents running tasks (``/api/v1/agent/...``, AGENT_CALL): lease a task
(long-poll), renew the lease by heartbeat, report the process's start and exit, ship its
output (task logs).

The agent is always the one its credential names (``Principal.agent_id``); no body field
can name another. A stale attempt is refused with 409 and another agent's with 404, as the
queue raises (docs/agents.md: fencing). The lease is an ``async def`` route: its wait
holds no thread (``TaskQueue.lease_async``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field
from starlette.status import HTTP_204_NO_CONTENT

from safeboard.auth.dependencies import requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import Forbidden
from safeboard.jobs.logs import TaskLogs
from safeboard.jobs.queue import AgentEvent, TaskQueue
from safeboard.jobs.schemas import TaskId
from safeboard.jobs.spec import MAX_GPUS, MAX_LABELS
from safeboard.provision import provided
from safeboard.schemas import Model, StrictModel
from safeboard.vocabulary import MAX_LOG_BATCH_LINES, MAX_LOG_LINE_BYTES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/agent")
MAX_FREE_GPUS = 4 * MAX_GPUS
AttemptNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
GpuUuid = Annotated[str, Field(min_length=1, max_length=128)]
Label = Annotated[str, Field(min_length=1, max_length=63)]


class LeaseRequest(StrictModel):
    free_gpus: list[GpuUuid] = Field(
        max_length=MAX_FREE_GPUS, description="UUIDs of the agent's idle GPUs (may be empty)."
    )
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    wait_seconds: float = Field(0.0, ge=0, le=25, description="Long-poll: wait this long.")


class LeaseOut(Model):
    id: int
    attempt: int
    run_id: str
    command: list[str]
    env: dict[str, str]
    gpus: list[str] = Field(description="UUIDs of the GPUs this attempt may use.")
    max_seconds: int | None
    lease_seconds: int = Field(description="A lease lasts this long without a heartbeat.")
    lease_expires_at: datetime
    deadline: datetime | None
    task_token: str | None = Field(None, description="The task's own credential (S14).")
    code_sha256: str | None = Field(
        None, description="Its code archive: GET .../tasks/{id}/{attempt}/code (None: none)."
    )
    secrets: dict[str, str] | None = Field(
        None, description="The task's secrets in clear, for its environment only: the one "
        "answer that carries their values (docs/agents.md, Secrets).",
    )  # fmt: skip
    params: dict[str, Any] | None = Field(
        None, description="Parameter overrides for init(config=...): SAFEBOARD_PARAMS."
    )


class BeatOut(Model):
    lease_expires_at: datetime
    cancel: bool = Field(description="Stop the process: a cancel or the maximum duration.")
    deadline: datetime | None


class EventIn(StrictModel):
    kind: Literal["starting", "running", "exited"]
    pid: int | None = Field(None, ge=1, le=2**31 - 1)
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    signal: int | None = Field(None, ge=1, le=127)
    reason: str = Field("", max_length=200,
                        description="exited: why the command was not run (its code), or "
                                    "that the agent stopped it (its drain).")  # fmt: skip


class EventOut(Model):
    state: str = Field(description="The task's state after the report.")


def _agent_of(principal: Principal) -> str:
    if principal.agent_id is None:  # AGENT_CALL is carried by agent credentials only
        raise Forbidden("only an agent may call this route")
    return principal.agent_id


@router.post("/lease", response_model=LeaseOut,
             responses={204: {"description": "Nothing to run after the wait."}})  # fmt: skip
async def lease(
    body: LeaseRequest,
    request: Request,
    principal: Principal = requires(Permission.AGENT_CALL),
    queue: TaskQueue = provided(TaskQueue),
) -> LeaseOut | Response:
    """A task that fits the agent's free GPUs and labels, leased to it as a new attempt;
    204 when none came within ``wait_seconds`` (or the server is stopping)."""
    found = await queue.lease_async(
        _agent_of(principal), body.free_gpus, body.labels, body.wait_seconds,
        gone=request.is_disconnected,
    )  # fmt: skip
    if found is None:
        return Response(status_code=HTTP_204_NO_CONTENT)
    return LeaseOut(
        id=found.task_id, attempt=found.attempt, run_id=found.run_id, command=found.command,
        env=found.env, gpus=found.gpu_uuids, max_seconds=found.max_seconds,
        lease_seconds=queue.settings.lease_seconds, lease_expires_at=found.lease_expires_at,
        deadline=found.deadline, task_token=found.task_token or None,
        code_sha256=found.code_sha256,
        secrets=found.secrets or None,
        params=found.params or None,
    )  # fmt: skip


@router.post("/tasks/{task_id}/{attempt}/heartbeat", response_model=BeatOut)
def heartbeat(
    task_id: TaskId,
    attempt: AttemptNumber,
    principal: Principal = requires(Permission.AGENT_CALL),
    queue: TaskQueue = provided(TaskQueue),
) -> BeatOut:
    """Renew the attempt's lease; ``cancel`` says to stop the process."""
    beat = queue.heartbeat(task_id, attempt, _agent_of(principal))
    return BeatOut(lease_expires_at=beat.lease_expires_at, cancel=beat.cancel,
                   deadline=beat.deadline)  # fmt: skip


@router.post("/tasks/{task_id}/{attempt}/events", response_model=EventOut)
def report(
    task_id: TaskId,
    attempt: AttemptNumber,
    body: EventIn,
    principal: Principal = requires(Permission.AGENT_CALL),
    queue: TaskQueue = provided(TaskQueue),
) -> EventOut:
    """The process is starting, running (``pid``) or exited (``exit_code`` or
    ``signal``). Idempotent: a repeat changes nothing."""
    event = AgentEvent(kind=body.kind, pid=body.pid, exit_code=body.exit_code,
                       signal=body.signal, reason=body.reason)  # fmt: skip
    return EventOut(state=queue.report(task_id, attempt, _agent_of(principal), event))


# Task logs (jobs/logs.py; docs/agents.md, "Logs")


class LogLineIn(StrictModel):
    stream: Literal["stdout", "stderr"]
    text: str = Field(max_length=MAX_LOG_LINE_BYTES + 100, description="One line, no newline.")


class LogBatchIn(StrictModel):
    seq: int = Field(ge=1, le=2**31 - 1, description="1, 2, ... per attempt; a retry repeats it.")
    lines: list[LogLineIn] = Field(min_length=1, max_length=MAX_LOG_BATCH_LINES)


class LogAckOut(Model):
    seq: int
    first_line: int = Field(description="The number of the batch's first line (from 1).")
    lines: int = Field(description="Lines kept.")
    dropped: int = Field(description="Lines past the task's cap, not kept.")
    truncated: bool = Field(description="The task's cap is reached: send no more.")


@router.post("/tasks/{task_id}/{attempt}/logs", response_model=LogAckOut)
def ship_logs(
    task_id: TaskId,
    attempt: AttemptNumber,
    body: LogBatchIn,
    principal: Principal = requires(Permission.AGENT_CALL),
    logs: TaskLogs = provided(TaskLogs),
) -> LogAckOut:
    """Batch ``seq`` of the attempt's output. Idempotent: a batch already stored is
    answered as stored (the first one stands)."""
    stored = logs.append(task_id, attempt, _agent_of(principal), body.seq,
                         [(line.stream, line.text) for line in body.lines])  # fmt: skip
    return LogAckOut(seq=stored.seq, first_line=stored.first_line, lines=stored.lines,
                     dropped=stored.dropped, truncated=stored.dropped > 0)  # fmt: skip
