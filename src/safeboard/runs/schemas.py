"""API shapes for projects and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from safeboard.schemas import Model, StrictModel

__all__ = [
    "MetricSummaryOut",
    "RunCreate",
    "RunOut",
    "RunPageOut",
    "RunUpdate",
]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
RUN_ID = r"^[0-9a-f]{32}$"
TAG_KEY = r"^[A-Za-z0-9_.:/-]{1,100}$"
JsonFloat = float | Literal["NaN", "Infinity", "-Infinity"]


class RunCreate(StrictModel):
    id: str | None = Field(None, pattern=RUN_ID, description="Client-made id (32 hex).")
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict, description="Parameters, nested.")
    tags: dict[str, str] = Field(default_factory=dict, max_length=100)
    system: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field("", max_length=20000)


class RunUpdate(StrictModel):
    status: Literal["finished", "failed", "killed"] | None = None
    config: dict[str, Any] | None = Field(None, description="Merged into the run's config.")
    tags: dict[str, str | None] | None = Field(None, description="null removes a tag.")
    notes: str | None = Field(None, max_length=20000)


class MetricSummaryOut(Model):
    key: str
    count: int
    last_step: int
    last_value: JsonFloat
    min: JsonFloat | None
    max: JsonFloat | None


class RunOut(Model):
    id: str
    project: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    config: dict[str, Any]
    tags: dict[str, str]
    system: dict[str, Any]
    notes: str
    metrics: list[MetricSummaryOut] = Field(default_factory=list)


class RunPageOut(Model):
    runs: list[RunOut]
    next_cursor: str | None
