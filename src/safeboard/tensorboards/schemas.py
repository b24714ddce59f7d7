"""API shapes of ``/api/v1/tensorboards``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LogdirOpen", "TensorboardOpened"]


class LogdirOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logdir: str = Field(min_length=1, max_length=4096, description="A directory of the server.")


class TensorboardOpened(BaseModel):
    id: str
    link: str = Field(description="One-time entry link (the ticket is in the fragment).")
    started: bool
