"""Finding a project a principal may act on: the one check every project-scoped use case
starts with (S9). No grant: 404, so existence does not leak; a weaker grant: 403."""

from __future__ import annotations

from sqlalchemy import Connection

from safeboard.auth.authorizer import credential_refusal, ensure_in_project
from safeboard.auth.permissions import Permission, ProjectRole, Role
from safeboard.auth.principal import Principal
from safeboard.errors import NotFound, ProjectMoved, SafeboardError
from safeboard.projects import lifecycle
from safeboard.projects import repository as projects
from safeboard.projects.repository import Project

__all__ = [
    "may_restore",
    "project_and_grant",
    "project_by_id",
    "project_by_name",
    "refuse_run_bound",
    "visible_project_ids",
]


def may_restore(conn: Connection, principal: Principal, project_id: int) -> bool:
    """Whether the principal may take this project out of the trash, or purge it: its
    owners and admins (a key bound to another project: no)."""
    if principal.project_id is not None and principal.project_id != project_id:
        return False
    if principal.role is Role.ADMIN:
        return True
    return projects.role_of(conn, project_id, principal.user_id) is ProjectRole.OWNER


def refuse_run_bound(principal: Principal) -> None:
    """Refuse a principal bound to one run (a task's token, S14) what reaches beyond that
    run: listings that span projects or runs, a preview link (which acts for a person)."""
    if principal.run_id is not None:
        raise credential_refusal(principal, Permission.PROJECTS_READ)


def _checked(
    conn: Connection, principal: Principal, project: Project | None, permission: Permission
) -> Project:
    return _granted(conn, principal, project, permission)[0]


def _granted(
    conn: Connection, principal: Principal, project: Project | None, permission: Permission
) -> tuple[Project, ProjectRole | None]:
    if project is None:
        raise NotFound("no such project")
    grant = projects.role_of(conn, project.id, principal.user_id)
    ensure_in_project(principal, permission, project.id, grant)
    return project, grant


def project_by_name(
    conn: Connection, principal: Principal, name: str, permission: Permission
) -> Project:
    """The live project called ``name``. When none is, but a project the principal may
    read gave that name up in a rename: ProjectMoved (a 308 to its current name); else,
    as for any name, NotFound."""
    found = projects.get_by_name(conn, name)
    if found is None:
        _moved(conn, principal, name)
    return _checked(conn, principal, found, permission)


def _moved(conn: Connection, principal: Principal, name: str) -> None:
    target = lifecycle.renamed_to(conn, name)
    if target is None:
        return
    try:  # reading the target is what the redirect reveals: only to who may
        project = _checked(conn, principal, projects.get(conn, target), Permission.PROJECTS_READ)
    except SafeboardError:
        raise NotFound("no such project") from None
    raise ProjectMoved(f"project {name!r} is now called {project.name!r}", old_name=name,
                       new_name=project.name)  # fmt: skip


def project_by_id(
    conn: Connection, principal: Principal, project_id: int, permission: Permission
) -> Project:
    return _checked(conn, principal, projects.get(conn, project_id), permission)


def project_and_grant(
    conn: Connection, principal: Principal, project_id: int, permission: Permission
) -> tuple[Project, ProjectRole | None]:
    """As ``project_by_id``, with the principal's grant there (None: none, as for an admin
    who holds no grant), so that further permissions are answered without another walk
    (``allowed_in_project``)."""
    return _granted(conn, principal, projects.get(conn, project_id), permission)


def visible_project_ids(conn: Connection, principal: Principal) -> list[int] | None:
    """Ids of the projects this principal can read, or None for every project (an admin's
    session or unbound key); a project-bound key sees that project only; a task's token,
    none (Forbidden)."""
    refuse_run_bound(principal)
    visible: list[int] | None = None
    if principal.role is not Role.ADMIN:
        visible = [p.id for p, _ in projects.visible(conn, principal.user_id, everyone=False)]
    if principal.project_id is not None:
        bound = principal.project_id
        visible = [bound] if visible is None else [i for i in visible if i == bound]
    return visible
