"""HTTP for projects and their grants: ``/api/v1/projects``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import Field
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from safeboard.auth.dependencies import requires, requires_project
from safeboard.auth.permissions import Permission, ProjectRole
from safeboard.auth.principal import Principal
from safeboard.projects.access import project_by_name
from safeboard.projects.repository import Activity, Project
from safeboard.projects.schemas import ProjectCreate, ProjectOut, ProjectRename
from safeboard.projects.service import ProjectService
from safeboard.provision import provided
from safeboard.schemas import StrictModel

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects")


class GrantIn(StrictModel):
    role: ProjectRole = Field(strict=False)


def _out(
    project: Project, role: ProjectRole | None, activity: Activity | None = None
) -> ProjectOut:
    activity = activity or Activity()
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        created_at=project.created_at,
        role=role.value if role else None,
        runs=activity.runs,
        last_run_at=activity.last_run_at,
    )


@router.get("", response_model=list[ProjectOut])
def list_projects(
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ProjectService = provided(ProjectService),
) -> list[ProjectOut]:
    found = service.visible(principal)
    activity = service.activity([p.id for p, _ in found])
    return [_out(p, role, activity.get(p.id)) for p, role in found]


@router.post("", status_code=HTTP_201_CREATED, response_model=ProjectOut)
def create_project(
    body: ProjectCreate,
    principal: Principal = requires(Permission.PROJECTS_CREATE),
    service: ProjectService = provided(ProjectService),
) -> ProjectOut:
    """Create a project; you become its owner."""
    project = service.create(principal, body.name, body.description)
    return _out(project, ProjectRole.OWNER)


@router.patch("/{name}", response_model=ProjectOut)
def rename_project(
    name: str,
    body: ProjectRename,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: ProjectService = provided(ProjectService),
) -> ProjectOut:
    """Rename a project (its owners): its runs, grants and keys bound to it follow."""
    project = service.rename(principal, name, body.name)
    role = service.role(principal, project.id)
    return _out(project, role, service.activity([project.id]).get(project.id))


@router.get("/{name}", response_model=ProjectOut)
def get_project(
    name: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ProjectService = provided(ProjectService),
) -> ProjectOut:
    with service.engine.connect() as conn:
        project = project_by_name(conn, principal, name, Permission.PROJECTS_READ)
    role = service.role(principal, project.id)
    return _out(project, role, service.activity([project.id]).get(project.id))


@router.put("/{name}/grants/{username}", status_code=HTTP_204_NO_CONTENT)
def set_grant(
    name: str,
    username: str,
    body: GrantIn,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: ProjectService = provided(ProjectService),
) -> Response:
    """Give a user a role in the project (owners and admins)."""
    with service.engine.connect() as conn:
        project = project_by_name(conn, principal, name, Permission.PROJECTS_READ)
    service.set_grant(principal, project.id, username, body.role)
    return Response(status_code=HTTP_204_NO_CONTENT)


@router.delete("/{name}/grants/{username}", status_code=HTTP_204_NO_CONTENT)
def remove_grant(
    name: str,
    username: str,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: ProjectService = provided(ProjectService),
) -> Response:
    with service.engine.connect() as conn:
        project = project_by_name(conn, principal, name, Permission.PROJECTS_READ)
    service.set_grant(principal, project.id, username, None)
    return Response(status_code=HTTP_204_NO_CONTENT)
