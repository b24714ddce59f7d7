"""Whether credentials still stand, asked in bulk: the accounts side of the re-check of
requests that last (server-sent event streams; runs/standing.py combines it with the
projects' grants; S8, S9).

An ordinary request looks its credential up when it arrives (``ApiKeyService.principal``,
``AuthService.session_principal``); :func:`read_credentials` asks the same of many
principals at once in at most three small indexed queries (keys, sessions, accounts) per
500 of each, and :func:`standing_role` applies those two methods' rules to the answer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts.models import ApiKeyRow, SessionRow, UserRow
from safeboard.auth.permissions import Role
from safeboard.auth.principal import Principal

__all__ = [
    "CredentialStanding",
    "KeyStanding",
    "SessionStanding",
    "chunks",
    "read_credentials",
    "standing_role",
]

_CHUNK = 500  # ids per IN (...): well inside every driver's parameter limit
_T = TypeVar("_T")


@dataclass(frozen=True)
class KeyStanding:
    user_id: int
    revoked: bool
    expires_at: datetime | None


@dataclass(frozen=True)
class SessionStanding:
    user_id: int
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class CredentialStanding:
    """What the database says now about some credentials; absent means gone."""

    keys: dict[str, KeyStanding] = field(default_factory=dict)
    sessions: dict[str, SessionStanding] = field(default_factory=dict)
    active_roles: dict[int, Role] = field(default_factory=dict)  # active accounts only
    queries: int = 0  # how many statements it took


def chunks(values: Collection[_T]) -> Iterator[list[_T]]:
    """``values`` in lists short enough for one ``IN (...)``."""
    ordered = list(values)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def read_credentials(conn: Connection, principals: Sequence[Principal]) -> CredentialStanding:
    """The state of every principal's key or session, and of its account."""
    standing = CredentialStanding()
    queries = 0
    for key_chunk in chunks({p.key_id for p in principals if p.key_id is not None}):
        queries += 1
        keys = conn.execute(
            sa.select(ApiKeyRow.id, ApiKeyRow.user_id, ApiKeyRow.revoked_at, ApiKeyRow.expires_at)
            .where(ApiKeyRow.id.in_(key_chunk))
        )  # fmt: skip
        for key in keys:
            standing.keys[key.id] = KeyStanding(
                key.user_id, key.revoked_at is not None, key.expires_at
            )
    hashes = {p.session_hash for p in principals if p.session_hash is not None}
    for session_chunk in chunks(hashes):
        queries += 1
        sessions = conn.execute(
            sa.select(SessionRow.id_hash, SessionRow.user_id, SessionRow.last_seen_at,
                      SessionRow.expires_at).where(SessionRow.id_hash.in_(session_chunk))
        )  # fmt: skip
        for session in sessions:
            standing.sessions[session.id_hash] = SessionStanding(
                session.user_id, session.last_seen_at, session.expires_at
            )
    for user_chunk in chunks({p.user_id for p in principals}):
        queries += 1
        users = conn.execute(
            sa.select(UserRow.id, UserRow.role).where(UserRow.id.in_(user_chunk), UserRow.is_active)
        )
        standing.active_roles.update((user_id, Role(role)) for user_id, role in users)
    return CredentialStanding(standing.keys, standing.sessions, standing.active_roles, queries)


def standing_role(
    standing: CredentialStanding, principal: Principal, now: datetime, idle: timedelta
) -> Role | None:
    """The account's role now while ``principal``'s credential stands; None once it has
    ended (key revoked or expired, session ended, account disabled or deleted). The rules
    of ``ApiKeyService.principal`` and ``AuthService.session_principal``."""
    role = standing.active_roles.get(principal.user_id)
    if role is None:  # the account was disabled (or deleted)
        return None
    if principal.key_id is not None:
        key = standing.keys.get(principal.key_id)
        if (
            key is None
            or key.revoked
            or key.user_id != principal.user_id
            or (key.expires_at is not None and now >= key.expires_at)
        ):
            return None
    elif principal.session_hash is not None:
        session = standing.sessions.get(principal.session_hash)
        if (
            session is None
            or session.user_id != principal.user_id
            or now >= session.expires_at
            or now - session.last_seen_at >= idle
        ):
            return None
    else:  # a credential this check does not know: end rather than trust it
        return None
    return role
