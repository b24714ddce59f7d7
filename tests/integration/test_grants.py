"""Project grants: who may change them, the last owner, and the audit trail (S9, S16)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from safeboard.accounts import repository as users
from safeboard.accounts.repository import User
from safeboard.audit import service as audit
from safeboard.auth.permissions import CredentialKind, ProjectRole, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.errors import Conflict, Forbidden, NotFound
from safeboard.projects import repository as projects
from safeboard.projects.service import ProjectService
from safeboard.runs.repository import activity as run_activity
from tests.support.schema import migrate


@pytest.fixture
def people(engine: Engine) -> dict[str, Principal]:
    migrate(engine)

    made: dict[str, Principal] = {}
    with engine.begin() as conn:
        for name, role in (
            ("root", Role.ADMIN),
            ("olga", Role.MEMBER),
            ("vic", Role.MEMBER),
            ("sam", Role.MEMBER),
        ):
            user: User = users.create(conn, username=name, role=role, now=datetime.now(UTC))
            made[name] = Principal(user.id, name, role, CredentialKind.SESSION, Scope.ADMIN)
    return made


def test_owner_grants_and_everything_is_audited(
    engine: Engine, people: dict[str, Principal]
) -> None:
    service = ProjectService(engine, activity=run_activity)
    project = service.create(people["olga"], "mnist")
    service.set_grant(people["olga"], project.id, "vic", ProjectRole.VIEWER)
    service.set_grant(people["olga"], project.id, "vic", ProjectRole.EDITOR)
    service.set_grant(people["olga"], project.id, "vic", None)
    with engine.connect() as conn:
        assert projects.role_of(conn, project.id, people["vic"].user_id) is None
    changes = [e for e in audit.list_entries(engine) if e.action == "grant.changed"]
    assert [(e.detail["user"], e.detail["from"], e.detail["to"]) for e in changes] == [
        ("olga", None, "owner"),
        ("vic", None, "viewer"),
        ("vic", "viewer", "editor"),
        ("vic", "editor", None),
    ]
    assert all(e.target == f"project:{project.id}" for e in changes)
    assert audit.verify(engine).ok


def test_only_owners_and_admins_change_grants(engine: Engine, people: dict[str, Principal]) -> None:
    service = ProjectService(engine, activity=run_activity)
    project = service.create(people["olga"], "cifar")
    service.set_grant(people["olga"], project.id, "vic", ProjectRole.EDITOR)
    with pytest.raises(Forbidden):  # an editor may not
        service.set_grant(people["vic"], project.id, "sam", ProjectRole.OWNER)
    with pytest.raises(NotFound):  # an outsider does not even see the project
        service.set_grant(people["sam"], project.id, "sam", ProjectRole.OWNER)
    service.set_grant(people["root"], project.id, "sam", ProjectRole.VIEWER)  # an admin may


def test_the_last_owner_stays(engine: Engine, people: dict[str, Principal]) -> None:
    service = ProjectService(engine, activity=run_activity)
    project = service.create(people["olga"], "imagenet")
    with pytest.raises(Conflict, match="last owner"):
        service.set_grant(people["olga"], project.id, "olga", ProjectRole.VIEWER)
    service.set_grant(people["olga"], project.id, "vic", ProjectRole.OWNER)
    service.set_grant(people["olga"], project.id, "olga", ProjectRole.VIEWER)


def test_read_only_key_cannot_manage_grants(engine: Engine, people: dict[str, Principal]) -> None:
    service = ProjectService(engine, activity=run_activity)
    project = service.create(people["olga"], "audio")
    olga_key = Principal(
        people["olga"].user_id, "olga", Role.MEMBER, CredentialKind.API_KEY, Scope.WRITE
    )
    with pytest.raises(Forbidden):
        service.set_grant(olga_key, project.id, "vic", ProjectRole.VIEWER)


def test_taking_away_a_role_nobody_holds_says_so_and_audits_nothing(
    engine: Engine, people: dict[str, Principal]
) -> None:
    service = ProjectService(engine, activity=run_activity)
    project = service.create(people["olga"], "cifar")
    before = len(audit.list_entries(engine))
    with pytest.raises(NotFound, match=r"^sam had no role in cifar: nothing to revoke$"):
        service.set_grant(people["olga"], project.id, "sam", None)
    assert len(audit.list_entries(engine)) == before
