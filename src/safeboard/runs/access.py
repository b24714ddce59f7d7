"""Finding a run a principal may act on (S9): its project's grant decides; a run in a
project the principal cannot see is "no such run", not a hint that it exists."""

from __future__ import annotations

from sqlalchemy import Connection

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import NotFound
from safeboard.projects.access import project_by_id
from safeboard.projects.repository import Project
from safeboard.runs import repository as runs
from safeboard.runs.repository import Run

__all__ = ["run_for", "run_project"]


def run_for(
    conn: Connection,
    principal: Principal,
    run_id: str,
    permission: Permission,
    *,
    documents: bool = False,
) -> tuple[Run, Project]:
    """The run and its project; its config and system information are read only when
    ``documents`` (otherwise they read as empty and are named in ``Run.withheld``)."""
    run = runs.get(conn, run_id, documents=documents)
    if run is None:
        raise NotFound("no such run")
    try:
        project = project_by_id(conn, principal, run.project_id, permission)
    except NotFound:
        raise NotFound("no such run") from None
    return run, project


def run_project(conn: Connection, principal: Principal, run_id: str, permission: Permission) -> int:
    """The run's project id once ``principal`` holds ``permission`` on it (NotFound
    otherwise): the metrics domain's ``RunGate``."""
    run, _ = run_for(conn, principal, run_id, permission)
    return run.project_id
