"""API shapes for projects."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from safeboard.schemas import Model, StrictModel
from safeboard.validation import NAME_PATTERN

__all__ = ["NAME", "ProjectCreate", "ProjectOut", "ProjectRename"]

NAME = NAME_PATTERN  # described in plain words by safeboard.validation


class ProjectCreate(StrictModel):
    name: str = Field(pattern=NAME, description="Letters, digits, . _ -; unique.")
    description: str = Field("", max_length=2000)


class ProjectRename(StrictModel):
    name: str = Field(pattern=NAME, description="The new name: letters, digits, . _ -; unique.")


class ProjectOut(Model):
    id: int
    name: str
    description: str
    created_at: datetime
    role: str | None = Field(description="Your role in it (admins may have none).")
    runs: int = Field(0, description="How many runs it holds.")
    last_run_at: datetime | None = Field(None, description="When its newest run was created.")
