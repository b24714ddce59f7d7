"""The base of every request and response model: strict, closed (S17)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Model", "StrictModel"]


class StrictModel(BaseModel):
    """Requests: unknown fields refused, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Model(BaseModel):
    """Responses."""

    model_config = ConfigDict(extra="forbid")
