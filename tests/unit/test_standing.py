"""The bulk re-check of a lasting request (runs/standing.py): the rules of a request's
own credential check and of the authorizer, applied to what the database says now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safeboard.accounts.standing import CredentialStanding
from safeboard.accounts.standing import KeyStanding as _Key
from safeboard.accounts.standing import SessionStanding as _Session
from safeboard.auth.permissions import CredentialKind, ProjectRole, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.runs.standing import (
    ACCESS_ENDED,
    CREDENTIAL_ENDED,
    Refusal,
    Standing,
    refusal,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
IDLE = timedelta(minutes=30)
PROJECT = 7


def by_key(role: Role = Role.MEMBER, project_id: int | None = None) -> Principal:
    return Principal(1, "alice", role, CredentialKind.API_KEY, Scope.READ, project_id, key_id="k1")


def by_session(role: Role = Role.MEMBER) -> Principal:
    return Principal(1, "alice", role, CredentialKind.SESSION, Scope.ADMIN, session_hash="h1")


def world(
    *,
    role: Role | None = Role.MEMBER,
    grant: ProjectRole | None = ProjectRole.VIEWER,
    key: _Key | None = None,
    session: _Session | None = None,
) -> Standing:
    return Standing(
        CredentialStanding(
            keys={"k1": key or _Key(1, revoked=False, expires_at=None)},
            sessions={"h1": session or _Session(1, NOW - timedelta(minutes=1), NOW + IDLE)},
            active_roles={} if role is None else {1: role},
        ),
        grants={} if grant is None else {(PROJECT, 1): grant},
    )


@pytest.mark.parametrize(
    ("standing", "principal", "expected"),
    [
        (world(), by_key(), None),
        (world(), by_session(), None),
        (world(grant=ProjectRole.OWNER), by_key(), None),
        # The credential.
        (world(key=_Key(1, revoked=True, expires_at=None)), by_key(), CREDENTIAL_ENDED),
        (world(key=_Key(1, revoked=False, expires_at=NOW)), by_key(), CREDENTIAL_ENDED),
        (world(key=_Key(2, revoked=False, expires_at=None)), by_key(), CREDENTIAL_ENDED),
        (
            Standing(CredentialStanding(active_roles={1: Role.MEMBER})),
            by_key(),
            CREDENTIAL_ENDED,
        ),  # deleted
        (
            Standing(CredentialStanding(active_roles={1: Role.MEMBER})),
            by_session(),
            CREDENTIAL_ENDED,
        ),  # logout
        (world(session=_Session(1, NOW - IDLE, NOW + IDLE)), by_session(), CREDENTIAL_ENDED),
        (world(session=_Session(1, NOW, NOW)), by_session(), CREDENTIAL_ENDED),  # absolute
        (world(role=None), by_key(), CREDENTIAL_ENDED),  # account disabled
        (world(role=None), by_session(), CREDENTIAL_ENDED),
        # The grant, and the role that stood in for one.
        (world(grant=None), by_key(), ACCESS_ENDED),
        (world(grant=None, role=Role.ADMIN), by_key(Role.MEMBER), None),  # promoted
        (world(grant=None, role=Role.MEMBER), by_key(Role.ADMIN), ACCESS_ENDED),  # demoted
        (world(), by_key(project_id=PROJECT + 1), ACCESS_ENDED),  # bound to another project
    ],
)
def test_refusal(standing: Standing, principal: Principal, expected: Refusal | None) -> None:
    assert refusal(standing, principal, PROJECT, NOW, IDLE) == expected


def test_an_unknown_kind_of_credential_is_not_trusted() -> None:
    neither = Principal(1, "alice", Role.ADMIN, CredentialKind.SESSION, Scope.ADMIN)
    assert refusal(world(), neither, PROJECT, NOW, IDLE) == CREDENTIAL_ENDED
