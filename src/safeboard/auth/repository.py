"""Queries on the credential tables. Returns plain objects; never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.auth.models import ApiKeyRow, OneTimeTokenRow, SessionRow
from safeboard.auth.permissions import Scope

__all__ = [
    "KeyInfo",
    "SessionInfo",
    "consume_token",
    "create_key",
    "create_session",
    "create_token",
    "delete_session",
    "delete_unused_tokens",
    "delete_user_sessions",
    "find_token",
    "get_key",
    "get_session",
    "list_keys",
    "list_sessions",
    "revoke_key",
    "revoke_user_keys",
    "touch_key",
    "touch_session",
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
