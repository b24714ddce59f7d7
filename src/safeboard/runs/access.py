"""Finding a run a principal may act on (S9): its project's grant decides; a run in a
project the principal cannot see is "no such run", not a hint that it exists. A principal
bound to one run (a task's token, S14) finds that run alone, as an editor of it
(``auth.permissions.RUN_BOUND_ROLE``): every other run is "no such run"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from safeboard.auth.authorizer import allowed_in_project, allowed_on_run, ensure_on_run
from safeboard.auth.permissions import Permission, ProjectRole
from safeboard.auth.principal import Principal
from safeboard.errors import NotFound
from safeboard.projects import repository as projects
from safeboard.projects.access import project_and_grant
from safeboard.projects.repository import Project
from safeboard.runs import repository as runs
from safeboard.runs.repository import Run

__all__ = ["RunAccess", "run_access", "run_for", "run_project", "still_allowed"]


@dataclass(frozen=True)
class RunAccess:
    """A run found for a principal, with the grant that let them in: what else they may
    do there is answered from it (``may``), not by walking the tables again."""

    run: Run
    project: Project
    grant: ProjectRole | None

    def may(self, principal: Principal, permission: Permission) -> bool:
        return allowed_on_run(principal, permission, self.project.id, self.run.id, self.grant)


def run_access(
    conn: Connection,
    principal: Principal,
    run_id: str,
    permission: Permission,
    *,
    documents: bool = False,
) -> RunAccess:
    """The run, its project and the principal's grant; its config and system information
    are read only when ``documents`` (otherwise they read as empty and are named in
    ``Run.withheld``)."""
    if principal.run_id is not None and principal.run_id != run_id:
        raise NotFound("no such run")  # a task's token: its own run only
    run = runs.get(conn, run_id, documents=documents)
    if run is None:
        raise NotFound("no such run")
    if principal.run_id is not None:
        project = projects.get(conn, run.project_id)
        if project is None:
            raise NotFound("no such run")
        ensure_on_run(principal, permission, project.id, run.id, None)
        return RunAccess(run, project, None)
    try:
        project, grant = project_and_grant(conn, principal, run.project_id, permission)
    except NotFound:
        raise NotFound("no such run") from None
    return RunAccess(run, project, grant)


def run_for(
    conn: Connection,
    principal: Principal,
    run_id: str,
    permission: Permission,
    *,
    documents: bool = False,
) -> tuple[Run, Project]:
    """The run and its project (see ``run_access``)."""
    found = run_access(conn, principal, run_id, permission, documents=documents)
    return found.run, found.project


def run_project(conn: Connection, principal: Principal, run_id: str, permission: Permission) -> int:
    """The run's project id once ``principal`` holds ``permission`` on it (NotFound
    otherwise): the metrics domain's ``RunGate``."""
    run, _ = run_for(conn, principal, run_id, permission)
    return run.project_id


def still_allowed(
    conn: Connection, checks: Sequence[tuple[Principal, int, str]], permission: Permission
) -> list[bool]:
    """For each (principal, project id, run id) that ``run_project`` let in before: whether
    the principal still holds ``permission`` there (their grants, one query) and the run is
    not in the trash (one query): the metrics domain's ``AccessRecheck``. A run's project
    never changes, and a purged run or project takes its batches' rows with it (they fail
    on their foreign key)."""
    grants = projects.grants_among(
        conn, {p.user_id for p, _, _ in checks}, {project_id for _, project_id, _ in checks}
    )
    live = runs.live_among(conn, {run_id for _, _, run_id in checks})
    # A task's token passed the gate for its own run only: that run is what it may reach.
    return [
        run_id in live
        and (
            allowed_on_run(p, permission, project_id, p.run_id, None)
            if p.run_id is not None
            else allowed_in_project(p, permission, project_id, grants.get((project_id, p.user_id)))
        )
        for p, project_id, run_id in checks
    ]
