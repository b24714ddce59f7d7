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
)

__all__ = [
    "ApiKey",
    "Artifact",
    "AuditEntry",
    "CreatedKey",
    "History",
    "MetricSummary",
    "Points",
    "Project",
    "Run",
    "RunListed",
    "RunPage",
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
