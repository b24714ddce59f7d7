"""Queries on ``users``. Returns plain ``User`` objects, never ORM rows."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.auth.permissions import Role
from safeboard.errors import Conflict, InvalidRequest
from safeboard.users.models import UserRow

__all__ = [
    "User",
    "count_active_admins",
    "create",
    "get",
    "get_by_username",
    "list_users",
    "normalize_username",
    "password_hash",
    "set_active",
    "set_password_hash",
    "set_role",
]

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_t = cast(sa.Table, UserRow.__table__)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool
    has_password: bool
    created_at: datetime
    password_changed_at: datetime | None


def normalize_username(name: str) -> str:
    """Case-folded NFKC form; 1-64 of a-z 0-9 . _ - starting with a letter or digit."""
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    if not _USERNAME.fullmatch(folded):
        raise InvalidRequest(
            "user name: 1 to 64 characters from a-z 0-9 . _ -, starting with a letter or digit"
        )
    return folded


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        username=m["username"],
        display_name=m["display_name"],
        role=Role(m["role"]),
        is_active=m["is_active"],
        has_password=m["password_hash"] is not None,
        created_at=m["created_at"],
        password_changed_at=m["password_changed_at"],
    )


def get(conn: Connection, user_id: int) -> User | None:
    row = conn.execute(sa.select(_t).where(_t.c.id == user_id)).first()
    return _user(row) if row else None


def get_by_username(conn: Connection, username: str) -> User | None:
    try:
        name = normalize_username(username)
    except InvalidRequest:
        return None
    row = conn.execute(sa.select(_t).where(_t.c.username == name)).first()
    return _user(row) if row else None


def password_hash(conn: Connection, user_id: int) -> str | None:
    value = conn.execute(sa.select(_t.c.password_hash).where(_t.c.id == user_id)).scalar()
    return str(value) if value is not None else None


def list_users(conn: Connection) -> list[User]:
    return [_user(row) for row in conn.execute(sa.select(_t).order_by(_t.c.username))]


def create(
    conn: Connection, *, username: str, role: Role, now: datetime, display_name: str = ""
) -> User:
    name = normalize_username(username)
    exists = conn.execute(sa.select(_t.c.id).where(_t.c.username == name)).first()
    if exists:
        raise Conflict(f"user {name} already exists")
    user_id = conn.execute(
        sa.insert(_t).values(
            username=name,
            display_name=display_name[:200],
            role=role.value,
            is_active=True,
            created_at=now,
        )
    ).inserted_primary_key
    assert user_id is not None  # noqa: S101
    created = get(conn, int(user_id[0]))
    assert created is not None  # noqa: S101
    return created


def set_password_hash(conn: Connection, user_id: int, value: str, now: datetime) -> None:
    conn.execute(
        sa.update(_t).where(_t.c.id == user_id).values(password_hash=value, password_changed_at=now)
    )


def set_role(conn: Connection, user_id: int, role: Role) -> None:
    conn.execute(sa.update(_t).where(_t.c.id == user_id).values(role=role.value))


def set_active(conn: Connection, user_id: int, active: bool) -> None:
    conn.execute(sa.update(_t).where(_t.c.id == user_id).values(is_active=active))


def count_active_admins(conn: Connection) -> int:
    """Active admins, their rows locked until the transaction ends (PostgreSQL: FOR
    UPDATE; SQLite: the caller's BEGIN IMMEDIATE), so that two demotions at once cannot
    both see a second admin."""
    query = (
        sa.select(_t.c.id)
        .where(_t.c.role == Role.ADMIN.value, _t.c.is_active)
        .order_by(_t.c.id)
        .with_for_update()
    )
    return len(conn.execute(query).all())
