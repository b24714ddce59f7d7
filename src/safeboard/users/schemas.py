"""API shapes for account administration."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from safeboard.auth.permissions import Role
from safeboard.schemas import Model, StrictModel

__all__ = ["InviteOut", "SessionOut", "UserCreate", "UserUpdate"]


class UserCreate(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    role: Role = Role.MEMBER
    display_name: str = Field("", max_length=200)


class UserUpdate(StrictModel):
    role: Role | None = None
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
