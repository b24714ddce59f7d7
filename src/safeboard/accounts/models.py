"""Account tables: users, and their credentials (sessions, API keys, one-time tokens)
and login throttling state.

No table holds a credential itself: sessions, keys and tokens are stored as hashes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime

__all__ = ["ApiKeyRow", "LoginThrottleRow", "OneTimeTokenRow", "SessionRow", "UserRow"]


def _user_fk() -> ForeignKey:
    return ForeignKey("users.id", ondelete="CASCADE")


class SessionRow(Base):
    __tablename__ = "sessions"

    # HMAC-SHA256 (keyed with the session secret) of the 256-bit id the cookie carries.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, _user_fk(), index=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    user_agent: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # HMAC-SHA256 of the session's binding secret: the cookie counts only together with
    # it (X-Safeboard-Binding), which cookies' indifference to ports cannot hand to
    # another service on the same host (auth/binding.py).
    binding_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("kind IN ('user', 'local', 'device')", name="kind"),)

    # The public part of ``sb_<id>_<secret>``.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256, hex
    user_id: Mapped[int] = mapped_column(Integer, _user_fk(), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    scopes: Mapped[str] = mapped_column(String(64), nullable=False)  # "read,write"
    project_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_used_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class OneTimeTokenRow(Base):
    """Startup links and invitations: single use, short-lived, stored as SHA-256."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (CheckConstraint("purpose IN ('startup', 'invite')", name="purpose"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    user_id: Mapped[int] = mapped_column(Integer, _user_fk(), index=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class LoginThrottleRow(Base):
    """Failed-login counters per case-folded username and per client address."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "user:x" / "addr:y"
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'member')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored case-folded; the unique index makes "Alice" and "alice" one account.
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    # NULL until a password is set (the OS user's admin signs in with the startup link).
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
