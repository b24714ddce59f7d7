"""API shapes for account administration."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from safeboard.auth.permissions import Role
from safeboard.schemas import Model, StrictModel

__all__ = ["InviteOut", "SessionOut", "UserCreate", "UserUpdate"]


class UserCreate(StrictModel):
    username: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Case-insensitive; stored lower-case.",
    )
    role: Role = Field(Role.MEMBER, strict=False)  # JSON strings name enum members
    display_name: str = Field("", max_length=200)


class UserUpdate(StrictModel):
    role: Role | None = Field(None, strict=False)
    active: bool | None = None


class InviteOut(Model):
    username: str
    link: str = Field(description="One-time link (the token is in the fragment); share it once.")
    expires_in_hours: int


class SessionOut(Model):
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str
