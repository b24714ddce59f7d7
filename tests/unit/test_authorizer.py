"""The authorizer's tables: roles, project grants, key scopes, credential types (S9)."""

from __future__ import annotations

import pytest

from safeboard.auth.authorizer import allowed, allowed_in_project, ensure, ensure_in_project
from safeboard.auth.permissions import (
    SESSION_ONLY,
    CredentialKind,
    Permission,
    ProjectRole,
    Role,
    Scope,
)
from safeboard.auth.principal import Principal
from safeboard.errors import Forbidden, NotFound

READ, WRITE, MANAGE = (
    Permission.PROJECTS_READ,
    Permission.PROJECTS_WRITE,
    Permission.PROJECTS_MANAGE,
)


def who(
    role: Role = Role.MEMBER,
    credential: CredentialKind = CredentialKind.SESSION,
    scope: Scope = Scope.ADMIN,
    project_id: int | None = None,
) -> Principal:
    return Principal(1, "u", role, credential, scope, project_id=project_id)


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        (None, {READ: False, WRITE: False, MANAGE: False}),
        (ProjectRole.VIEWER, {READ: True, WRITE: False, MANAGE: False}),
        (ProjectRole.EDITOR, {READ: True, WRITE: True, MANAGE: False}),
        (ProjectRole.OWNER, {READ: True, WRITE: True, MANAGE: True}),
    ],
)
def test_project_grants(grant: ProjectRole | None, expected: dict[Permission, bool]) -> None:
    for permission, answer in expected.items():
        assert allowed_in_project(who(), permission, 7, grant) is answer


def test_admins_reach_every_project() -> None:
    for permission in (READ, WRITE, MANAGE):
        assert allowed_in_project(who(Role.ADMIN), permission, 7, None)


def test_no_grant_hides_the_project_and_a_weak_grant_forbids() -> None:
    with pytest.raises(NotFound):
        ensure_in_project(who(), WRITE, 7, None)
    with pytest.raises(Forbidden):
        ensure_in_project(who(), WRITE, 7, ProjectRole.VIEWER)


def test_project_bound_key_sees_only_its_project() -> None:
    key = who(Role.ADMIN, CredentialKind.API_KEY, Scope.ADMIN, project_id=7)
    assert allowed_in_project(key, WRITE, 7, None)
    assert not allowed_in_project(key, READ, 8, ProjectRole.OWNER)
    with pytest.raises(NotFound):
        ensure_in_project(key, READ, 8, ProjectRole.OWNER)
    assert not allowed(key, Permission.USERS_READ)
    assert not allowed(key, Permission.KEYS_WRITE)
    assert allowed(key, Permission.ACCOUNT_READ)


@pytest.mark.parametrize(
    ("scope", "read", "write", "manage"),
    [
        (Scope.READ, True, False, False),
        (Scope.WRITE, True, True, False),
        (Scope.ADMIN, True, True, True),
    ],
)
def test_key_scope_caps_an_owner(scope: Scope, read: bool, write: bool, manage: bool) -> None:
    key = who(credential=CredentialKind.API_KEY, scope=scope)
    owner = ProjectRole.OWNER
    assert allowed_in_project(key, READ, 7, owner) is read
    assert allowed_in_project(key, WRITE, 7, owner) is write
    assert allowed_in_project(key, MANAGE, 7, owner) is manage


def test_a_key_never_grants_more_than_its_owner_has() -> None:
    member_key = who(Role.MEMBER, CredentialKind.API_KEY, Scope.ADMIN)
    assert not allowed(member_key, Permission.USERS_MANAGE)
    assert not allowed(member_key, Permission.AUDIT_READ)
    assert not allowed_in_project(member_key, READ, 7, None)


def test_only_sessions_change_passwords() -> None:
    assert allowed(who(), Permission.ACCOUNT_UPDATE)
    admin_key = who(Role.ADMIN, CredentialKind.API_KEY, Scope.ADMIN)
    assert not allowed(admin_key, Permission.ACCOUNT_UPDATE)


@pytest.mark.parametrize("scope", list(Scope))
def test_no_api_key_sets_a_password_or_opens_a_session(scope: Scope) -> None:
    """Inviting (a link that sets a password and signs in) is session-only, like changing
    your password: for an admin's key of any scope, whatever the admin may do."""
    assert {Permission.ACCOUNT_UPDATE, Permission.USERS_INVITE} == SESSION_ONLY
    admin_key = who(Role.ADMIN, CredentialKind.API_KEY, scope)
    for permission in SESSION_ONLY:
        assert not allowed(admin_key, permission)
        with pytest.raises(Forbidden, match="signed-in session"):
            ensure(admin_key, permission)
    assert allowed(who(Role.ADMIN), Permission.USERS_INVITE)
    assert not allowed(who(Role.MEMBER), Permission.USERS_INVITE)


def test_every_permission_has_a_scope_and_a_decision_for_every_role() -> None:
    from safeboard.auth.permissions import ROLE_PERMISSIONS, SCOPE_OF

    assert set(SCOPE_OF) == set(Permission)
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_asking_the_wrong_question_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="per project"):
        allowed(who(), READ)
    with pytest.raises(ValueError, match="not a project permission"):
        allowed_in_project(who(), Permission.USERS_READ, 7, None)


def test_an_agent_credential_carries_agent_call_and_nothing_else() -> None:
    """S9: the agent's credential reaches the agent API only; no person's credential, an
    admin's session included, reaches it."""
    agent = Principal(0, "agent:gpu-1", Role.MEMBER, CredentialKind.AGENT, Scope.WRITE,
                      agent_id="0123456789ab")  # fmt: skip
    assert allowed(agent, Permission.AGENT_CALL)
    for permission in set(Permission) - {Permission.AGENT_CALL}:
        if permission in {READ, WRITE, MANAGE}:
            assert not allowed_in_project(agent, permission, 7, ProjectRole.OWNER)
        else:
            assert not allowed(agent, permission)
            with pytest.raises(Forbidden, match="only the agent API"):
                ensure(agent, permission)
    for credential in (CredentialKind.SESSION, CredentialKind.API_KEY):
        person = who(Role.ADMIN, credential, Scope.ADMIN)
        assert not allowed(person, Permission.AGENT_CALL)
        assert allowed(person, Permission.AGENTS_MANAGE)
    assert not allowed(who(Role.MEMBER), Permission.AGENTS_MANAGE)
    assert agent.actor == "agent:gpu-1 (0123456789ab)"
