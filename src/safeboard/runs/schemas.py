"""API shapes for projects and runs."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from safeboard.ids import ID_PATTERN
from safeboard.runs.models import TAG_KEY_LENGTH, TAG_VALUE_LENGTH
from safeboard.schemas import Model, StrictModel

__all__ = [
    "MetricSummaryOut",
    "RunCreate",
    "RunOut",
    "RunPageOut",
    "RunUpdate",
]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
RUN_ID = f"^{ID_PATTERN}$"
TAG_KEY = r"^[A-Za-z0-9_.:/-]{1,100}$"
JsonFloat = float | Literal["NaN", "Infinity", "-Infinity"]
# As long as the columns hold: PostgreSQL refuses longer text (SQLite would keep it).
TagKey = Annotated[str, Field(max_length=TAG_KEY_LENGTH)]
TagValue = Annotated[str, Field(max_length=TAG_VALUE_LENGTH)]


def _finite(value: Any, where: str = "config") -> Any:
    """JSON documents hold finite numbers only (NaN cannot be stored or searched)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _finite(item, where)
    return value


def _finite_document(value: Any) -> Any:
    return _finite(value)


class RunCreate(StrictModel):
    id: str | None = Field(None, pattern=RUN_ID, description="Client-made id (32 hex).")
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict, description="Parameters, nested.")
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=100)
    system: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field("", max_length=20000)

    _checked = field_validator("config", "system")(_finite_document)


class RunUpdate(StrictModel):
    status: Literal["finished", "failed", "killed"] | None = None
    config: dict[str, Any] | None = Field(None, description="Merged into the run's config.")
    tags: dict[TagKey, TagValue | None] | None = Field(None, description="null removes a tag.")
    notes: str | None = Field(None, max_length=20000)

    _checked = field_validator("config")(_finite_document)


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
