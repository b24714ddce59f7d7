"""API shapes for tasks (``/api/v1/projects/{project}/tasks``, ``/api/v1/tasks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import Field

from safeboard.jobs.spec import (
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_ENV,
    MAX_ENV_VALUE_CHARS,
    MAX_GPUS,
    MAX_LABELS,
    MAX_PARAMS_BYTES,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_SECRET_BYTES,
    MAX_SECRETS,
)
from safeboard.schemas import Model, StrictModel

__all__ = [
    "MAX_TASK_ID",
    "AttemptOut",
    "RunAgain",
    "TaskId",
    "TaskListOut",
    "TaskOut",
    "TaskSubmit",
]

MAX_TASK_ID = 2**62
# A task id in a path, bounded like every integer a client sends (S17).
TaskId = Annotated[int, Path(ge=1, le=MAX_TASK_ID)]

Arg = Annotated[str, Field(max_length=MAX_ARG_CHARS)]
EnvName = Annotated[str, Field(min_length=1, max_length=128)]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE_CHARS)]
Label = Annotated[str, Field(min_length=1, max_length=63)]
SecretValue = Annotated[str, Field(min_length=1, max_length=MAX_SECRET_BYTES)]
PARAMS = (
    "Parameter overrides (a JSON object, at most "
    f"{MAX_PARAMS_BYTES // 1024} KiB): inside the task, safeboard.init(config=defaults) "
    "applies them on top of the script's defaults (nested objects merged key by key)."
)


class TaskSubmit(StrictModel):
    command: list[Arg] = Field(min_length=1, max_length=MAX_ARGS,
                               description="The program and its arguments (no shell).")  # fmt: skip
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, max_length=MAX_ENV,
        description="Plain environment variables (names: letters, digits, _; not SAFEBOARD_*). "
        "Visible to whoever can read the project: never a secret.",
    )  # fmt: skip
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS,
                                description="The agent must carry every one.")  # fmt: skip
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher first.")
    max_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS,
                                    description="Stopped (failed) after this long.")  # fmt: skip
    max_lost_retries: int = Field(2, ge=0, le=MAX_RETRIES,
                                  description="Retries of lost attempts (agent gone).")  # fmt: skip
    retry_on_failure: bool = Field(False, description="Retry a non-zero exit too (same bound).")
    name: str | None = Field(None, min_length=1, max_length=200, description="The run's name.")
    code_sha256: str | None = Field(
        None, min_length=64, max_length=64, pattern="^[0-9a-f]{64}$",
        description="The task's code: the SHA-256 of a tar.gz uploaded to the project "
        "(PUT /api/v1/projects/{project}/code/{sha256}), unpacked as the process's working "
        "directory. None: no code, the command must exist on the agent's machine.",
    )  # fmt: skip
    secrets: dict[EnvName, SecretValue] = Field(
        default_factory=dict, max_length=MAX_SECRETS,
        description="Secret environment variables: stored encrypted, given to the task's "
        "process only; answers show their names (``secret_names``), never the values.",
    )  # fmt: skip
    params: dict[str, Any] = Field(default_factory=dict, description=PARAMS)


class RunAgain(StrictModel):
    """Run again: a new task with this task's code, env and secrets, and these."""

    command: list[Arg] = Field(min_length=1, max_length=MAX_ARGS,
                               description="The program and its arguments (no shell).")  # fmt: skip
    params: dict[str, Any] = Field(default_factory=dict, description=PARAMS)
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    max_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    name: str | None = Field(None, min_length=1, max_length=200, description="The run's name.")


class AttemptOut(Model):
    attempt: int
    agent_id: str
    gpu_uuids: list[str]
    state: str
    leased_at: datetime
    lease_expires_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    signal: int | None
    reason: str


class TaskOut(Model):
    id: int
    project: str
    run_id: str
    state: str
    command: list[str]
    env: dict[str, str]
    gpus: int
    labels: list[str]
    priority: int
    max_seconds: int | None
    max_lost_retries: int
    retry_on_failure: bool
    attempt: int
    cancel_requested_by: str | None
    retry_of: int | None
    reason: str
    created_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptOut] = Field(default_factory=list,
                                       description="Only when one task is shown.")  # fmt: skip
    code_sha256: str | None = Field(None, description="Its code archive (None: no code).")
    secret_names: list[str] = Field(
        default_factory=list, description="The task's secrets: names, never values."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameter overrides.")
    waiting_reason: str | None = Field(
        None, description="Queued while no enrolled agent could ever take it (none enrolled, "
        "or none with that many GPUs or those labels): why, and the fix. It stays queued: "
        "an agent that joins later takes it. Set in the answers of submit, retry, run "
        "again and one task shown; None otherwise.",
    )  # fmt: skip


class TaskListOut(Model):
    tasks: list[TaskOut]
    next_before: int | None = Field(None, description="Pass as ``before`` for older tasks.")
