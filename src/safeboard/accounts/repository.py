"""Queries on the account tables (users, sessions, API keys, one-time tokens). Returns
plain objects such as ``User``, never ORM rows; never commits."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts.models import ApiKeyRow, OneTimeTokenRow, SessionRow, UserRow
from safeboard.auth.permissions import Role, Scope
from safeboard.errors import Conflict, InvalidRequest

__all__ = [
    "KeyInfo",
    "SessionInfo",
    "User",
    "consume_token",
    "count_active_admins",
    "create",
    "create_key",
    "create_session",
    "create_token",
    "delete_session",
    "delete_unused_tokens",
    "delete_user",
    "delete_user_sessions",
    "find_token",
    "get",
    "get_by_username",
    "get_key",
    "get_session",
    "list_keys",
    "list_sessions",
    "list_users",
    "lock_user",
    "normalize_username",
    "password_hash",
    "revoke_key",
    "revoke_user_keys",
    "set_active",
    "set_password_hash",
    "set_role",
    "touch_key",
    "touch_session",
    "username_of",
]


_s = cast(sa.Table, SessionRow.__table__)
_k = cast(sa.Table, ApiKeyRow.__table__)
_o = cast(sa.Table, OneTimeTokenRow.__table__)


@dataclass(frozen=True)
class SessionInfo:
    id_hash: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str
    binding_hash: str


@dataclass(frozen=True)
class KeyInfo:
    id: str
    user_id: int
    name: str
    kind: str
    scope: Scope
    project_id: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_address: str | None
    revoked_at: datetime | None
    secret_hash: str

    def __repr__(self) -> str:  # the hash is not a secret, but it has no business in logs
        return f"KeyInfo(id={self.id!r}, name={self.name!r}, user_id={self.user_id})"


def _session(row: sa.Row[tuple[object, ...]]) -> SessionInfo:
    return SessionInfo(**{f: row._mapping[f] for f in SessionInfo.__dataclass_fields__})


def _key(row: sa.Row[tuple[object, ...]]) -> KeyInfo:
    m = dict(row._mapping)
    m["scope"] = Scope(m.pop("scopes"))
    return KeyInfo(**{f: m[f] for f in KeyInfo.__dataclass_fields__})


# Sessions


def create_session(conn: Connection, session: SessionInfo) -> None:
    values = {f: getattr(session, f) for f in SessionInfo.__dataclass_fields__}
    values["user_agent"] = values["user_agent"][:200]
    conn.execute(sa.insert(_s).values(**values))


def get_session(conn: Connection, id_hash: str) -> SessionInfo | None:
    row = conn.execute(sa.select(_s).where(_s.c.id_hash == id_hash)).first()
    return _session(row) if row else None


def touch_session(conn: Connection, id_hash: str, now: datetime) -> None:
    conn.execute(sa.update(_s).where(_s.c.id_hash == id_hash).values(last_seen_at=now))


def delete_session(conn: Connection, id_hash: str) -> bool:
    return conn.execute(sa.delete(_s).where(_s.c.id_hash == id_hash)).rowcount > 0


def delete_user_sessions(conn: Connection, user_id: int, *, keep: str | None = None) -> int:
    query = sa.delete(_s).where(_s.c.user_id == user_id)
    if keep is not None:
        query = query.where(_s.c.id_hash != keep)
    return conn.execute(query).rowcount


def list_sessions(conn: Connection, user_id: int) -> list[SessionInfo]:
    query = sa.select(_s).where(_s.c.user_id == user_id).order_by(_s.c.created_at.desc())
    return [_session(row) for row in conn.execute(query)]


# API keys


def create_key(conn: Connection, key: KeyInfo) -> None:
    values = {f: getattr(key, f) for f in KeyInfo.__dataclass_fields__ if f != "scope"}
    conn.execute(sa.insert(_k).values(scopes=key.scope.value, **values))


def get_key(conn: Connection, key_id: str) -> KeyInfo | None:
    row = conn.execute(sa.select(_k).where(_k.c.id == key_id)).first()
    return _key(row) if row else None


def list_keys(conn: Connection, user_id: int | None) -> list[KeyInfo]:
    query = sa.select(_k).order_by(_k.c.created_at.desc())
    if user_id is not None:
        query = query.where(_k.c.user_id == user_id)
    return [_key(row) for row in conn.execute(query)]


def revoke_key(conn: Connection, key_id: str, now: datetime) -> bool:
    query = sa.update(_k).where(_k.c.id == key_id, _k.c.revoked_at.is_(None))
    return conn.execute(query.values(revoked_at=now)).rowcount > 0


def delete_user(conn: Connection, user_id: int) -> None:
    """The account's row; its sessions, keys, tokens and grants go with it (ON DELETE
    CASCADE), what it created stays (SET NULL)."""
    conn.execute(sa.delete(_t).where(_t.c.id == user_id))


def revoke_user_keys(
    conn: Connection,
    user_id: int,
    now: datetime,
    *,
    kind: str | None = None,
    only_unexpiring: bool = False,
) -> int:
    query = sa.update(_k).where(_k.c.user_id == user_id, _k.c.revoked_at.is_(None))
    if kind is not None:
        query = query.where(_k.c.kind == kind)
    if only_unexpiring:
        query = query.where(_k.c.expires_at.is_(None))
    return conn.execute(query.values(revoked_at=now)).rowcount


def touch_key(conn: Connection, key_id: str, now: datetime, address: str) -> None:
    conn.execute(
        sa.update(_k).where(_k.c.id == key_id).values(last_used_at=now, last_used_address=address)
    )


# One-time tokens (startup links, invitations)


def create_token(
    conn: Connection,
    *,
    token_hash: str,
    purpose: str,
    user_id: int,
    now: datetime,
    expires_at: datetime,
) -> None:
    conn.execute(
        sa.insert(_o).values(
            token_hash=token_hash,
            purpose=purpose,
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
        )
    )


def consume_token(conn: Connection, token_hash: str, purpose: str, now: datetime) -> int | None:
    """Mark a valid token used and return its user id; None if unknown, used or expired.

    One UPDATE with the conditions in its WHERE: two concurrent uses cannot both win.
    """
    query = (
        sa.update(_o)
        .where(
            _o.c.token_hash == token_hash,
            _o.c.purpose == purpose,
            _o.c.used_at.is_(None),
            _o.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(_o.c.user_id)
    )
    user_id = conn.execute(query).scalar()
    return int(user_id) if user_id is not None else None


def find_token(conn: Connection, token_hash: str, purpose: str, now: datetime) -> int | None:
    """The user id of a valid (unused, unexpired) token, which stays valid; else None."""
    query = sa.select(_o.c.user_id).where(
        _o.c.token_hash == token_hash,
        _o.c.purpose == purpose,
        _o.c.used_at.is_(None),
        _o.c.expires_at > now,
    )
    user_id = conn.execute(query).scalar()
    return int(user_id) if user_id is not None else None


def delete_unused_tokens(conn: Connection, purpose: str, user_id: int | None = None) -> int:
    query = sa.delete(_o).where(_o.c.purpose == purpose, _o.c.used_at.is_(None))
    if user_id is not None:
        query = query.where(_o.c.user_id == user_id)
    return conn.execute(query).rowcount


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


def lock_user(conn: Connection, user_id: int) -> None:
    """Lock the user's row until the transaction ends (PostgreSQL; SQLite has one writer),
    so that one user's concurrent requests counted against a per-user bound (projects
    created, artifact bytes) count each other."""
    # FOR NO KEY UPDATE: it serialises those counts, and does not block the KEY SHARE locks
    # that inserts referencing the user take (a grant, an artifact), so no deadlock with them.
    conn.execute(sa.select(_t.c.id).where(_t.c.id == user_id).with_for_update(key_share=True))


def username_of(user_id: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """A sub-select for the username of the account ``user_id`` names (NULL once that
    account is gone), for other domains' listings (an artifact's uploader)."""
    return sa.select(_t.c.username).where(_t.c.id == user_id).scalar_subquery()
