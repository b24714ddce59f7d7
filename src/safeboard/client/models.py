"""What the typed client returns: frozen dataclasses read from the API's JSON, with the
vocabulary's enums (``safeboard.vocabulary``) where the API sends one of a few words.
``to_json()`` gives the stable, JSON-ready form the CLI prints with ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Any

from safeboard.vocabulary import (
    ArtifactKind,
    ArtifactState,
    KeyScope,
    ProjectRole,
    RunStatus,
    TaskState,
)

__all__ = [
    "AgentInfo",
    "ApiKey",
    "Artifact",
    "AuditEntry",
    "CreatedKey",
    "Enrollment",
    "Heartbeat",
    "HelloAnswer",
    "History",
    "JoinToken",
    "MetricSummary",
    "Points",
    "Project",
    "Run",
    "RunListed",
    "RunPage",
    "Task",
    "TaskAttempt",
    "TaskLease",
    "User",
]

Float = float | str  # "NaN", "Infinity" and "-Infinity" arrive as strings


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _plain(value: Any) -> Any:  # noqa: PLR0911  (one return per kind of value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


class _Json:
    def to_json(self) -> dict[str, Any]:
        """Field name -> JSON value (times as ISO-8601, enums as their words)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Project(_Json):
    id: int
    name: str
    description: str
    created_at: datetime
    role: ProjectRole | None
    runs: int
    last_run_at: datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Project:
        return cls(
            id=int(d["id"]),
            name=d["name"],
            description=d.get("description", ""),
            created_at=_when(d["created_at"]),
            role=ProjectRole(d["role"]) if d.get("role") else None,
            runs=int(d.get("runs", 0)),
            last_run_at=_time(d.get("last_run_at")),
        )


@dataclass(frozen=True)
class MetricSummary(_Json):
    key: str
    count: int
    last_step: int
    last_value: Float
    min: Float | None
    max: Float | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MetricSummary:
        return cls(d["key"], int(d["count"]), int(d["last_step"]), d["last_value"],
                   d.get("min"), d.get("max"))  # fmt: skip


@dataclass(frozen=True)
class Run(_Json):
    id: str
    project: str
    name: str
    status: RunStatus
    created_at: datetime
    ended_at: datetime | None
    config: dict[str, Any]
    tags: dict[str, str]
    system: dict[str, Any]
    notes: str
    metrics: tuple[MetricSummary, ...]
    omitted: tuple[str, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Run:
        return cls(
            id=d["id"],
            project=d["project"],
            name=d["name"],
            status=RunStatus(d["status"]),
            created_at=_when(d["created_at"]),
            ended_at=_time(d.get("ended_at")),
            config=d.get("config", {}),
            tags=d.get("tags", {}),
            system=d.get("system", {}),
            notes=d.get("notes", ""),
            metrics=tuple(MetricSummary.from_json(m) for m in d.get("metrics", [])),
            omitted=tuple(d.get("omitted", [])),
        )


@dataclass(frozen=True)
class RunListed(_Json):
    """A run in a list: no system information or notes; of its config only the paths asked
    for (``omitted``: those too long to list); in ``metrics`` the last values of the
    metrics asked for (and of a ``metrics.<key>`` sort) that the run has logged."""

    id: str
    project: str
    name: str
    status: RunStatus
    created_at: datetime
    ended_at: datetime | None
    tags: dict[str, str]
    config: dict[str, Any]
    omitted: tuple[str, ...]
    metrics: dict[str, Float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunListed:
        return cls(
            id=d["id"],
            project=d["project"],
            name=d["name"],
            status=RunStatus(d["status"]),
            created_at=_when(d["created_at"]),
            ended_at=_time(d.get("ended_at")),
            tags=d.get("tags", {}),
            config=d.get("config", {}),
            omitted=tuple(d.get("omitted", [])),
            metrics=d.get("metrics", {}),
        )


@dataclass(frozen=True)
class RunPage:
    runs: tuple[RunListed, ...]
    next_cursor: str | None
    total: int | None = None  # asked with count=True: how many runs match


@dataclass(frozen=True)
class Points(_Json):
    key: str
    steps: tuple[int, ...]
    times: tuple[float, ...]
    values: tuple[Float, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Points:
        return cls(d["key"], tuple(d["steps"]), tuple(d["times"]), tuple(d["values"]))


@dataclass(frozen=True)
class History:
    """A metric downsampled: per bucket its last step, min, max and last value."""

    key: str
    last_step: tuple[int, ...]
    min: tuple[Float, ...]
    max: tuple[Float, ...]
    last: tuple[Float, ...]

    @classmethod
    def from_json(cls, key: str, d: dict[str, Any]) -> History:
        return cls(key, tuple(d["last_step"]), tuple(d["min"]), tuple(d["max"]),
                   tuple(d["last"]))  # fmt: skip


@dataclass(frozen=True)
class Artifact(_Json):
    id: str
    run_id: str
    name: str
    kind: ArtifactKind
    content_type: str
    size: int
    sha256: str
    step: int | None
    state: ArtifactState
    received: int
    created_by: str | None
    created_at: datetime
    ready_at: datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Artifact:
        return cls(
            id=d["id"],
            run_id=d["run_id"],
            name=d["name"],
            kind=ArtifactKind(d["kind"]),
            content_type=d.get("content_type", "application/octet-stream"),
            size=int(d["size"]),
            sha256=d["sha256"],
            step=d.get("step"),
            state=ArtifactState(d["state"]),
            received=int(d.get("received", 0)),
            created_by=d.get("created_by"),
            created_at=_when(d["created_at"]),
            ready_at=_time(d.get("ready_at")),
        )


@dataclass(frozen=True)
class ApiKey(_Json):
    id: str
    name: str
    owner: str
    kind: str
    scope: KeyScope
    project_id: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_address: str | None
    revoked_at: datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ApiKey:
        return cls(
            id=d["id"],
            name=d["name"],
            owner=d["owner"],
            kind=d["kind"],
            scope=KeyScope(d["scope"]),
            project_id=d.get("project_id"),
            created_at=_when(d["created_at"]),
            expires_at=_time(d.get("expires_at")),
            last_used_at=_time(d.get("last_used_at")),
            last_used_address=d.get("last_used_address"),
            revoked_at=_time(d.get("revoked_at")),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its token, which the server shows this once."""

    key: ApiKey
    token: str

    def __repr__(self) -> str:
        return f"CreatedKey(key={self.key!r}, token='**********')"


@dataclass(frozen=True)
class User(_Json):
    username: str
    display_name: str
    role: str
    is_active: bool
    has_password: bool
    created_at: datetime

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> User:
        return cls(d["username"], d.get("display_name", ""), d["role"], bool(d["is_active"]),
                   bool(d["has_password"]), _when(d["created_at"]))  # fmt: skip


@dataclass(frozen=True)
class AuditEntry(_Json):
    id: int
    at: datetime
    action: str
    actor: str
    target: str
    outcome: str
    address: str
    detail: dict[str, Any]
    hash: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(int(d["id"]), _when(d["at"]), d["action"], d["actor"], d["target"],
                   d["outcome"], d["address"], d.get("detail", {}), d["hash"])  # fmt: skip


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


@dataclass(frozen=True)
class TaskLease:
    """One attempt of a task, leased to this agent: what to run, on which GPUs, for how
    long without a heartbeat. ``task_token`` (the task's own credential) is secret."""

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

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskLease:
        return cls(int(d["id"]), int(d["attempt"]), d["run_id"], tuple(d["command"]),
                   dict(d.get("env", {})), tuple(d.get("gpus", [])), d.get("max_seconds"),
                   int(d["lease_seconds"]), _when(d["lease_expires_at"]),
                   _time(d.get("deadline")), d.get("task_token"))  # fmt: skip


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
        )
