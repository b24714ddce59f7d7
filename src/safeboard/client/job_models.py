"""What the typed client returns for agents and queued tasks (issue 14): frozen
dataclasses read from the API's JSON, like ``client.models`` (whose helpers they share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from safeboard.client.models import _Json, _time, _when
from safeboard.vocabulary import TaskState

__all__ = [
    "PARAMS_ENV",
    "AgentInfo",
    "CodeStatus",
    "Enrollment",
    "Heartbeat",
    "HelloAnswer",
    "JoinToken",
    "Task",
    "TaskAttempt",
    "TaskLease",
    "secret_values",
]


@dataclass(frozen=True)
class JoinToken(_Json):
    """A new join token; ``join_string`` is shown once (the server keeps only a hash)."""

    id: str
    join_string: str = field(repr=False)
    pool: str
    labels: tuple[str, ...]
    url: str
    expires_at: datetime

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JoinToken:
        return cls(d["id"], d["join_string"], d["pool"], tuple(d.get("labels", ())),
                   d["url"], _when(d["expires_at"]))  # fmt: skip


@dataclass(frozen=True)
class Enrollment:
    """An agent's identity and credential, as enrollment returns them (once)."""

    agent_id: str
    name: str
    pool: str
    credential: str = field(repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Enrollment:
        return cls(d["agent_id"], d["name"], d["pool"], d["credential"])


# The task's parameter overrides, as JSON, in its environment ("Run again"; sdk/task.py).
PARAMS_ENV = "SAFEBOARD_PARAMS"


@dataclass(frozen=True)
class TaskLease:
    """One attempt of a task, leased to this agent: what to run, on which GPUs, for how
    long without a heartbeat. ``task_token`` (the task's own credential) and ``secrets``
    (the task's secret variables, in clear) are secret: never in a repr."""

    task_id: int
    attempt: int
    run_id: str
    command: tuple[str, ...]
    env: dict[str, str]
    gpus: tuple[str, ...]
    max_seconds: int | None
    lease_seconds: int
    lease_expires_at: datetime
    deadline: datetime | None
    task_token: str | None = field(default=None, repr=False)
    code_sha256: str | None = None  # the task's code archive (None: run a command as is)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    params: dict[str, Any] = field(default_factory=dict)  # overrides for init(config=)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskLease:
        return cls(int(d["id"]), int(d["attempt"]), d["run_id"], tuple(d["command"]),
                   dict(d.get("env", {})), tuple(d.get("gpus", [])), d.get("max_seconds"),
                   int(d["lease_seconds"]), _when(d["lease_expires_at"]),
                   _time(d.get("deadline")), d.get("task_token"),
                   code_sha256=d.get("code_sha256"),
                   secrets=dict(d.get("secrets") or {}),
                   params=dict(d.get("params") or {}))  # fmt: skip


@dataclass(frozen=True)
class CodeStatus:
    """Whether a project holds a code archive, and the largest the server takes."""

    sha256: str
    uploaded: bool
    size: int | None
    max_bytes: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CodeStatus:
        return cls(d["sha256"], bool(d["uploaded"]), d.get("size"), int(d["max_bytes"]))


def secret_values(lease: TaskLease) -> list[str]:
    """What must never appear in a line the agent writes about this attempt, or in the
    task's uploaded log: its secrets' values and its task token (longest first, so that a
    value containing another is redacted whole)."""
    values = [*lease.secrets.values(), *([lease.task_token] if lease.task_token else [])]
    return sorted({v for v in values if v}, key=len, reverse=True)


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat's answer: the renewed lease, and whether to stop the process."""

    lease_expires_at: datetime
    cancel: bool
    deadline: datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Heartbeat:
        return cls(_when(d["lease_expires_at"]), bool(d["cancel"]), _time(d.get("deadline")))


@dataclass(frozen=True)
class HelloAnswer(_Json):
    agent_id: str
    name: str
    pool: str
    labels: tuple[str, ...]
    server_time: datetime

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HelloAnswer:
        return cls(d["agent_id"], d["name"], d["pool"], tuple(d.get("labels", ())),
                   _when(d["server_time"]))  # fmt: skip


@dataclass(frozen=True)
class AgentInfo(_Json):
    """An enrolled agent as admins see it (never its credential)."""

    id: str
    name: str
    pool: str
    labels: tuple[str, ...]
    reported_labels: tuple[str, ...]
    hostname: str
    version: str
    gpus: tuple[dict[str, Any], ...]
    cpus: int | None
    memory_mib: int | None
    created_at: datetime
    created_by: str
    last_seen_at: datetime | None
    last_address: str | None
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AgentInfo:
        return cls(
            id=d["id"],
            name=d["name"],
            pool=d["pool"],
            labels=tuple(d.get("labels", ())),
            reported_labels=tuple(d.get("reported_labels", ())),
            hostname=d.get("hostname", ""),
            version=d.get("version", ""),
            gpus=tuple(d.get("gpus", ())),
            cpus=d.get("cpus"),
            memory_mib=d.get("memory_mib"),
            created_at=_when(d["created_at"]),
            created_by=d.get("created_by", ""),
            last_seen_at=_time(d.get("last_seen_at")),
            last_address=d.get("last_address"),
            revoked_at=_time(d.get("revoked_at")),
            revoked_by=d.get("revoked_by"),
        )


@dataclass(frozen=True)
class TaskAttempt(_Json):
    """One lease of a task by one agent."""

    attempt: int
    agent_id: str
    gpu_uuids: tuple[str, ...]
    state: TaskState
    leased_at: datetime
    lease_expires_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    signal: int | None
    reason: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskAttempt:
        return cls(int(d["attempt"]), d["agent_id"], tuple(d.get("gpu_uuids", [])),
                   TaskState(d["state"]), _when(d["leased_at"]), _when(d["lease_expires_at"]),
                   _time(d.get("started_at")), _time(d.get("ended_at")), d.get("exit_code"),
                   d.get("signal"), d.get("reason", ""))  # fmt: skip


@dataclass(frozen=True)
class Task(_Json):
    """A queued job: what was submitted, where it stands, its run; ``attempts`` only when
    one task is shown (``Client.task``)."""

    id: int
    project: str
    run_id: str
    state: TaskState
    command: tuple[str, ...]
    env: dict[str, str]
    gpus: int
    labels: tuple[str, ...]
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
    attempts: tuple[TaskAttempt, ...] = ()
    code_sha256: str | None = None  # its code archive; None: a command of the agent's
    secret_names: tuple[str, ...] = ()  # never the values
    params: dict[str, Any] = field(default_factory=dict)  # over init(config=)'s defaults
    waiting_reason: str | None = None  # queued, and no enrolled agent could take it: why

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Task:
        return cls(
            id=int(d["id"]),
            project=d["project"],
            run_id=d["run_id"],
            state=TaskState(d["state"]),
            command=tuple(d["command"]),
            env=dict(d.get("env", {})),
            gpus=int(d["gpus"]),
            labels=tuple(d.get("labels", [])),
            priority=int(d["priority"]),
            max_seconds=d.get("max_seconds"),
            max_lost_retries=int(d["max_lost_retries"]),
            retry_on_failure=bool(d["retry_on_failure"]),
            attempt=int(d["attempt"]),
            cancel_requested_by=d.get("cancel_requested_by"),
            retry_of=d.get("retry_of"),
            reason=d.get("reason", ""),
            created_at=_when(d["created_at"]),
            finished_at=_time(d.get("finished_at")),
            attempts=tuple(TaskAttempt.from_json(a) for a in d.get("attempts", [])),
            code_sha256=d.get("code_sha256"),
            secret_names=tuple(d.get("secret_names", ())),
            params=dict(d.get("params") or {}),
            waiting_reason=d.get("waiting_reason"),
        )
