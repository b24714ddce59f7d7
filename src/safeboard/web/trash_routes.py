"""The dashboard's trash pages: a project's, ``/projects/{name}/trash`` (web/trash_page.py),
and the deleted projects, ``/trash`` (web/deleted_projects_page.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.provision import provided
from safeboard.trash.service import TrashService
from safeboard.web.deleted_projects_page import (
    DeletedProject,
    purge_after,
    render_deleted_projects,
)
from safeboard.web.responses import PageRoute
from safeboard.web.routes import viewer_of
from safeboard.web.trash_page import TrashView, render_trash

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/projects/{name}/trash", response_class=HTMLResponse)
def trash_page(
    request: Request,
    name: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TrashService = provided(TrashService),
) -> HTMLResponse:
    """The project's deleted runs (restore, purge) and, for its owners, its settings."""
    project, runs = service.trash(principal, name)  # who may not read it: 404
    _, kept = service.retention(principal, name)
    may = service.permissions(principal, project.id)
    view = TrashView(project=project, runs=runs, retention=kept,
                     trash_days=service.effective_trash_days(kept),
                     can_edit=Permission.PROJECTS_WRITE in may,
                     can_manage=Permission.PROJECTS_MANAGE in may)  # fmt: skip
    return HTMLResponse(render_trash(view, viewer_of(request, principal)))


@router.get("/trash", response_class=HTMLResponse)
def deleted_projects_page(
    request: Request,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TrashService = provided(TrashService),
) -> HTMLResponse:
    """The projects in the trash this person may restore or purge (owners; admins: all)."""
    days = service.settings.trash_days
    listed = [DeletedProject(p, purge_after(p, days)) for p in service.trashed_projects(principal)]
    return HTMLResponse(render_deleted_projects(listed, viewer_of(request, principal)))
