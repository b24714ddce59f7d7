"""API shapes for projects and runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from safeboard.documents import MAX_NOTES_CHARS, MAX_TAGS, document_problem, tags_problem
from safeboard.runs.models import TAG_KEY_LENGTH
from safeboard.schemas import Model, StrictModel
from safeboard.validation import NAME_PATTERN, RUN_ID_PATTERN

__all__ = [
    "MetricSummaryOut",
    "RunCreate",
    "RunIdsOut",
    "RunListedOut",
    "RunOut",
    "RunPageOut",
    "RunUpdate",
]

NAME = NAME_PATTERN  # both described in plain words by safeboard.validation
RUN_ID = RUN_ID_PATTERN
TAG_KEY = r"^[A-Za-z0-9_.:/-]{1,100}$"
# = vocabulary.FINAL_STATUSES (tests/unit/test_vocabulary.py)
Final = Literal["finished", "failed", "killed"]
JsonFloat = float | Literal["NaN", "Infinity", "-Infinity"]
# As long as the column holds: PostgreSQL refuses longer text (SQLite would keep it).
# Values are bounded to theirs by documents.tags_problem (MAX_TAG_VALUE_CHARS).
TagKey = Annotated[str, Field(max_length=TAG_KEY_LENGTH)]


def _bounded(where: str) -> Callable[[Any], Any]:
    """A validator: the document within the bounds of safeboard.documents (S17)."""

    def check(value: Any) -> Any:
        problem = None if value is None else document_problem(value, where)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check


def _bounded_tags(value: Any) -> Any:
    problem = None if value is None else tags_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class RunCreate(StrictModel):
    id: str | None = Field(None, pattern=RUN_ID, description="Client-made id (32 hex).")
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict, description="Parameters, nested.")
    tags: dict[TagKey, str] = Field(default_factory=dict, max_length=MAX_TAGS)
    system: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field("", max_length=MAX_NOTES_CHARS)

    _config = field_validator("config")(_bounded("config"))
    _system = field_validator("system")(_bounded("system"))
    _tags = field_validator("tags")(_bounded_tags)


class RunUpdate(StrictModel):
    status: Final | None = None
    config: dict[str, Any] | None = Field(None, description="Merged into the run's config.")
    tags: dict[TagKey, str | None] | None = Field(
        None, max_length=2 * MAX_TAGS, description="null removes a tag."
    )
    notes: str | None = Field(None, max_length=MAX_NOTES_CHARS)

    _config = field_validator("config")(_bounded("config"))
    _tags = field_validator("tags")(_bounded_tags)


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
    omitted: list[Literal["config", "system"]] = Field(
        default_factory=list,
        description=(
            "Documents left out (read as empty): stored beyond today's bounds by an older "
            "server, so too large or too deeply nested to answer with."
        ),
    )


class RunListedOut(Model):
    """A run in a list: no system information or notes (GET /api/v1/runs/{id} has them), of
    its config only the keys asked for with ``config_key``, of its metrics only the last
    values asked for with ``metric``."""

    id: str
    project: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    tags: dict[str, str]
    config: dict[str, Any] = Field(
        description="The values at the dotted paths asked for ({} when none were), nested "
        "as in the run's config."
    )
    omitted: list[str] = Field(
        default_factory=list,
        description="Paths asked for whose value is too long for a list (over 1,000 "
        "characters as JSON): read them from the run itself.",
    )
    metrics: dict[str, JsonFloat] = Field(
        default_factory=dict,
        description="The last values of the metrics asked for with ``metric`` (and of a "
        "``metrics.<key>`` sort) that the run has logged.",
    )


class RunPageOut(Model):
    runs: list[RunListedOut]
    next_cursor: str | None = Field(description="Pass back as ``cursor`` (same sort, order).")
    total: int | None = Field(None, description="With ``count=true``: the runs that match.")


class RunIdsOut(Model):
    ids: list[str] = Field(description="Sorted; more than one: the prefix is ambiguous.")
