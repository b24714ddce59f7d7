"""Whether credentials still stand: the checks an ordinary request passes once, asked in
bulk for requests that last (server-sent event streams, runs/streams.py; S8, S9).

An ordinary request looks its credential up when it arrives (``ApiKeyService.principal``,
``AuthService.session_principal``), so a revoked key, an ended session, a disabled account
or a removed grant stops it at once. A stream lasts for hours, so each replica re-asks the
database about all its open streams together: :func:`read_standing` costs at most four
small indexed queries (keys, sessions, accounts, grants) however many streams are open,
and :func:`refusal` applies the same rules as those two methods to the answer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.accounts.models import ApiKeyRow, SessionRow, UserRow
from safeboard.auth.authorizer import allowed_in_project
from safeboard.auth.permissions import Permission, ProjectRole, Role
from safeboard.auth.principal import Principal
from safeboard.projects.models import ProjectGrantRow

__all__ = ["ACCESS_ENDED", "CREDENTIAL_ENDED", "Refusal", "Standing", "read_standing", "refusal"]

_CHUNK = 500  # ids per IN (...): well inside every driver's parameter limit
_T = TypeVar("_T")


@dataclass(frozen=True)
class Refusal:
    """Why a lasting request must end, in the API's error terms (code, message)."""

    code: str
    message: str


CREDENTIAL_ENDED = Refusal(
    "unauthenticated", "this stream's credential was revoked or has expired: sign in again"
)
ACCESS_ENDED = Refusal("not_found", "this stream's project is no longer yours to read")


@dataclass(frozen=True)
class _Key:
    user_id: int
    revoked: bool
    expires_at: datetime | None


@dataclass(frozen=True)
class _Session:
    user_id: int
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Standing:
    """What the database says now about some principals; absent means gone."""

    keys: dict[str, _Key] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    active_roles: dict[int, Role] = field(default_factory=dict)  # active accounts only
    grants: dict[tuple[int, int], ProjectRole] = field(default_factory=dict)
    queries: int = 0  # how many statements it took (reported by the stream guard)


def _chunks(values: Collection[_T]) -> Iterator[list[_T]]:
    ordered = list(values)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def read_standing(conn: Connection, watched: Sequence[tuple[Principal, int]]) -> Standing:
    """The state of every (principal, project id) pair's credential, account and grant."""
    key_ids = {p.key_id for p, _ in watched if p.key_id is not None}
    session_hashes = {p.session_hash for p, _ in watched if p.session_hash is not None}
    user_ids = {p.user_id for p, _ in watched}
    project_ids = {project_id for _, project_id in watched}
    standing = Standing()
    queries = 0
    for key_chunk in _chunks(key_ids):
        queries += 1
        keys = conn.execute(
            sa.select(ApiKeyRow.id, ApiKeyRow.user_id, ApiKeyRow.revoked_at, ApiKeyRow.expires_at)
            .where(ApiKeyRow.id.in_(key_chunk))
        )  # fmt: skip
        for key in keys:
            standing.keys[key.id] = _Key(key.user_id, key.revoked_at is not None, key.expires_at)
    for session_chunk in _chunks(session_hashes):
        queries += 1
        sessions = conn.execute(
            sa.select(SessionRow.id_hash, SessionRow.user_id, SessionRow.last_seen_at,
                      SessionRow.expires_at).where(SessionRow.id_hash.in_(session_chunk))
        )  # fmt: skip
        for session in sessions:
            standing.sessions[session.id_hash] = _Session(
                session.user_id, session.last_seen_at, session.expires_at
            )
    for user_chunk in _chunks(user_ids):
        queries += 2
        users = conn.execute(
            sa.select(UserRow.id, UserRow.role).where(UserRow.id.in_(user_chunk), UserRow.is_active)
        )
        standing.active_roles.update((user_id, Role(role)) for user_id, role in users)
        grants = conn.execute(
            sa.select(ProjectGrantRow.project_id, ProjectGrantRow.user_id, ProjectGrantRow.role)
            .where(ProjectGrantRow.user_id.in_(user_chunk),
                   ProjectGrantRow.project_id.in_(project_ids))
        )  # fmt: skip
        standing.grants.update(((p, u), ProjectRole(role)) for p, u, role in grants)
    return replace(standing, queries=queries)


def refusal(
    standing: Standing, principal: Principal, project_id: int, now: datetime, idle: timedelta
) -> Refusal | None:
    """None while ``principal`` may still read ``project_id``; else why not. The rules of
    ``ApiKeyService.principal``, ``AuthService.session_principal`` and the authorizer."""
    role = standing.active_roles.get(principal.user_id)
    if role is None:  # the account was disabled (or deleted)
        return CREDENTIAL_ENDED
    if principal.key_id is not None:
        key = standing.keys.get(principal.key_id)
        if (
            key is None
            or key.revoked
            or key.user_id != principal.user_id
            or (key.expires_at is not None and now >= key.expires_at)
        ):
            return CREDENTIAL_ENDED
    elif principal.session_hash is not None:
        session = standing.sessions.get(principal.session_hash)
        if (
            session is None
            or session.user_id != principal.user_id
            or now >= session.expires_at
            or now - session.last_seen_at >= idle
        ):
            return CREDENTIAL_ENDED
    else:  # a credential this check does not know: end rather than trust it
        return CREDENTIAL_ENDED
    current = replace(principal, role=role)  # a demoted admin loses what the role gave
    grant = standing.grants.get((project_id, principal.user_id))
    if not allowed_in_project(current, Permission.PROJECTS_READ, project_id, grant):
        return ACCESS_ENDED
    return None
