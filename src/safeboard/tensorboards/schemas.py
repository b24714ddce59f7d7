"""API shapes of ``/api/v1/tensorboards``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_RUNS", "TensorboardOpen", "TensorboardOpened"]

MAX_RUNS = 20  # as many as the compare view shows

RunId = Annotated[str, Field(min_length=1, max_length=64)]


class TensorboardOpen(BaseModel):
    """Exactly one of ``logdir`` (admins: a directory of the server) and ``runs``."""

    model_config = ConfigDict(extra="forbid")

    logdir: str | None = Field(
        None, min_length=1, max_length=4096, description="A directory of the server (admins)."
    )
    runs: list[RunId] | None = Field(
        None,
        min_length=1,
        max_length=MAX_RUNS,
        description="Runs whose event files (kept as their artifacts) TensorBoard shows.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> TensorboardOpen:
        if (self.logdir is None) == (self.runs is None):
            raise ValueError("give exactly one of logdir and runs")
        return self


class TensorboardOpened(BaseModel):
    id: str
    link: str = Field(description="One-time entry link (the ticket is in the fragment).")
    started: bool
