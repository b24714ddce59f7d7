"""API shapes for join tokens, enrollment, an agent's hello and the agent list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from safeboard.schemas import Model, StrictModel

__all__ = [
    "AgentOut",
    "CurrentTaskOut",
    "EnrollRequest",
    "Enrolled",
    "Gpu",
    "Hello",
    "HelloAnswer",
    "JoinTokenCreate",
    "JoinTokenCreated",
]

Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
_LABELS: list[str] = Field(default_factory=list, max_length=32)
_POOL = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class JoinTokenCreate(StrictModel):
    pool: str = _POOL
    labels: list[Label] = _LABELS
    ttl_seconds: int | None = Field(None, ge=60, le=7 * 86400, description="Default 1 hour.")
    ca_pin: str | None = Field(
        None,
        min_length=43,
        max_length=43,
        description="Only where TLS ends at a proxy: the SHA-256 of the proxy CA's key.",
    )


class JoinTokenCreated(Model):
    id: str
    join_string: str = Field(description="Shown once: it cannot be retrieved again.")
    pool: str
    labels: list[str]
    url: str
    expires_at: datetime


class EnrollRequest(StrictModel):
    token: str = Field(min_length=1, max_length=400, description="<token id>.<secret>")
    hostname: str = Field("", max_length=255)
    version: str = Field("", max_length=64)
    labels: list[Label] = _LABELS


class Enrolled(Model):
    agent_id: str
    name: str
    pool: str
    credential: str = Field(description="Shown once; the server keeps only its hash.")


class Gpu(StrictModel):
    index: int = Field(ge=0, le=1024)
    uuid: str = Field(min_length=1, max_length=128)
    model: str = Field("", max_length=128)
    memory_mib: int | None = Field(None, ge=0, le=2**40)


class Hello(StrictModel):
    hostname: str = Field(min_length=1, max_length=255)
    version: str = Field("", max_length=64)
    gpus: list[Gpu] = Field(default_factory=list, max_length=64)
    cpus: int | None = Field(None, ge=1, le=1 << 20)
    memory_mib: int | None = Field(None, ge=0, le=2**40)
    labels: list[Label] = _LABELS


class HelloAnswer(Model):
    agent_id: str
    name: str
    pool: str
    labels: list[str]
    server_time: datetime


class CurrentTaskOut(Model):
    task_id: int
    attempt: int
    project: str
    run_id: str
    state: str
    gpus: list[str] = Field(description="UUIDs of the GPUs the attempt holds.")


class AgentOut(Model):
    id: str
    name: str
    pool: str
    labels: list[str] = Field(description="Given by the join token.")
    reported_labels: list[str] = Field(description="Reported by the agent in its hello.")
    hostname: str
    version: str
    gpus: list[dict[str, object]]
    cpus: int | None
    memory_mib: int | None
    created_at: datetime
    created_by: str
    last_seen_at: datetime | None
    last_address: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    current_tasks: list[CurrentTaskOut] = Field(
        default_factory=list, description="Its live attempts: leased, starting, running."
    )
    busy_gpus: list[str] = Field(
        default_factory=list, description="UUIDs of its GPUs that live attempts hold."
    )
