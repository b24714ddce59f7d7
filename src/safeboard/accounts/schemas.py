"""API shapes for sign-in, sessions, API keys and account administration."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from safeboard.auth.permissions import Role, Scope
from safeboard.schemas import Model, RowId, StrictModel

__all__ = [
    "InviteAccept",
    "InviteOut",
    "InviteToken",
    "Invitee",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "LoginRequest",
    "OwnSessionOut",
    "PasswordChange",
    "SessionOut",
    "SignedIn",
    "TokenRequest",
    "UserCreate",
    "UserOut",
    "UserSessionOut",
    "UserUpdate",
]


_Secret = Field(min_length=1, max_length=4096)


class LoginRequest(StrictModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = _Secret
    next: str | None = Field(None, max_length=2000, description="Where to go afterwards.")


class TokenRequest(StrictModel):
    token: str = Field(min_length=1, max_length=200)
    next: str | None = Field(None, max_length=2000)


class InviteToken(StrictModel):
    token: str = Field(min_length=1, max_length=200)


class Invitee(Model):
    """Whom an invitation is for (the invite page greets them by name)."""

    username: str
    display_name: str


class InviteAccept(StrictModel):
    token: str = Field(min_length=1, max_length=200)
    password: str = _Secret


class PasswordChange(StrictModel):
    current_password: str = Field(max_length=4096)
    new_password: str = _Secret


class UserOut(Model):
    username: str
    display_name: str
    role: str
    is_active: bool
    has_password: bool
    created_at: datetime


class SessionOut(Model):
    user: UserOut
    credential: str
    csrf_token: str | None = Field(description="Send as X-CSRF-Token on unsafe requests.")
    expires_at: datetime | None = None
    redirect: str = "/"


class SignedIn(SessionOut):
    binding: str = Field(
        description="Send as X-Safeboard-Binding with every request of this session: the "
        "cookie alone is not enough. Only in this response; the dashboard keeps it in "
        "storage of its own origin and its service worker sends it."
    )


class OwnSessionOut(Model):
    id: str = Field(description="Names the session for DELETE /api/v1/auth/sessions/{id}.")
    current: bool = Field(description="The session this request came with.")
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str


class KeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    scope: Scope = Field(Scope.READ, strict=False)  # JSON strings name enum members
    project_id: RowId | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    never_expires: bool = False


class KeyOut(Model):
    id: str
    name: str
    owner: str
    kind: str
    scope: Scope
    project_id: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_address: str | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    token: str = Field(description="The key itself: shown this once, never again.")


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


class UserSessionOut(Model):
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str
