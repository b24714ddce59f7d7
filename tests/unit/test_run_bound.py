"""A principal bound to one run (a task's token, S14): editor of its own run, nothing on
any other run, nothing project-wide, nothing outside its project (auth/permissions.py:
RUN_BOUND_ROLE; auth/authorizer.py: allowed_on_run)."""

from __future__ import annotations

import pytest

from safeboard.auth.authorizer import (
    allowed,
    allowed_in_project,
    allowed_on_run,
    ensure,
    ensure_in_project,
    ensure_on_run,
)
from safeboard.auth.permissions import CredentialKind, Permission, ProjectRole, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.errors import Forbidden, NotFound

READ, WRITE, MANAGE = (
    Permission.PROJECTS_READ,
    Permission.PROJECTS_WRITE,
    Permission.PROJECTS_MANAGE,
)
RUN, OTHER = "a" * 32, "b" * 32


def task(role: Role = Role.MEMBER) -> Principal:
    return Principal(5, "task:9", role, CredentialKind.TASK, Scope.WRITE, project_id=7,
                     task_id=9, attempt=2, run_id=RUN)  # fmt: skip


@pytest.mark.parametrize("role", list(Role))
def test_editor_of_its_own_run_only(role: Role) -> None:
    token = task(role)  # even an admin's task: its token carries the task's reach only
    for grant in (None, ProjectRole.OWNER):
        assert allowed_on_run(token, READ, 7, RUN, grant)
        assert allowed_on_run(token, WRITE, 7, RUN, grant)
        assert not allowed_on_run(token, MANAGE, 7, RUN, grant)
        assert not allowed_on_run(token, READ, 7, OTHER, grant)
        assert not allowed_on_run(token, READ, 8, RUN, grant)
        for permission in (READ, WRITE, MANAGE):
            assert not allowed_in_project(token, permission, 7, grant)
    for permission in set(Permission) - {READ, WRITE, MANAGE}:
        assert not allowed(token, permission)
        with pytest.raises(Forbidden, match="only its own run"):
            ensure(token, permission)


def test_refusals_say_what_the_token_reaches() -> None:
    token = task()
    ensure_on_run(token, WRITE, 7, RUN, None)
    with pytest.raises(NotFound):
        ensure_on_run(token, READ, 7, OTHER, None)
    with pytest.raises(NotFound):
        ensure_on_run(token, READ, 8, RUN, None)
    with pytest.raises(Forbidden, match="only its own run"):
        ensure_on_run(token, MANAGE, 7, RUN, None)
    with pytest.raises(Forbidden, match="not the whole project"):
        ensure_in_project(token, READ, 7, ProjectRole.OWNER)
    with pytest.raises(NotFound):
        ensure_in_project(token, READ, 8, ProjectRole.OWNER)
    assert token.actor == f"task:9 (attempt 2, run {RUN})"


def test_other_principals_keep_their_grants_on_runs() -> None:
    person = Principal(1, "u", Role.MEMBER, CredentialKind.API_KEY, Scope.WRITE)
    assert allowed_on_run(person, WRITE, 7, RUN, ProjectRole.EDITOR)
    assert not allowed_on_run(person, WRITE, 7, RUN, ProjectRole.VIEWER)
    with pytest.raises(NotFound):
        ensure_on_run(person, READ, 7, RUN, None)
