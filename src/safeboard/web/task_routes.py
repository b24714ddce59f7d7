"""The pages of tasks: a project's Tasks tab and a task's page (web/task_pages.py). They
declare their permission as the task API does: the project's readers see them, anyone
else gets 404 (as for the project's runs)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse

from safeboard.agents import repository as agents_repository
from safeboard.agents.repository import Agent
from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import utcnow
from safeboard.jobs import repository as tasks_repository
from safeboard.jobs.schemas import MAX_TASK_ID, TaskId
from safeboard.jobs.service import TaskService
from safeboard.projects.access import project_by_name
from safeboard.provision import provided
from safeboard.runs import repository as runs_repository
from safeboard.vocabulary import TaskState
from safeboard.web.responses import PageRoute
from safeboard.web.routes import viewer_of
from safeboard.web.task_pages import TaskPageView, TasksView, render_task, render_tasks

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=PageRoute)
TASK_PAGE = 50
STATES = len(TaskState)


def _agents(conn: sa.Connection, ids: set[str]) -> dict[str, Agent]:
    found = {i: agents_repository.get_agent(conn, i) for i in sorted(ids)}
    return {i: agent for i, agent in found.items() if agent is not None}


@router.get("/projects/{name}/tasks", response_class=HTMLResponse)
def tasks_page(
    request: Request,
    name: str,
    *,
    state: list[TaskState] | None = Query(None, max_length=STATES),
    before: int | None = Query(None, ge=1, le=MAX_TASK_ID),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TaskService = provided(TaskService),
    engine: sa.Engine = provided(sa.Engine),
) -> HTMLResponse:
    """The project's tasks, newest first, 50 a page (``before``), in the ``state``s given."""
    states = [s.value for s in state or []]
    with engine.connect() as conn:  # who may not read the project: 404
        project = project_by_name(conn, principal, name, Permission.PROJECTS_READ)
    found = service.listed(principal, project=name, states=states, before=before,
                           limit=TASK_PAGE + 1)  # fmt: skip
    shown = found[:TASK_PAGE]
    with engine.connect() as conn:
        latest = tasks_repository.latest_attempts(conn, [d.task for d in shown])
        agents = _agents(conn, {a.agent_id for a in latest.values()})
    view = TasksView(project=project, tasks=shown, latest=latest, agents=agents, states=states,
                     before=before, now=utcnow(),
                     next_before=shown[-1].task.id if len(found) > TASK_PAGE else None)  # fmt: skip
    return HTMLResponse(render_tasks(view, viewer_of(request, principal)))


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    request: Request,
    task_id: TaskId,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TaskService = provided(TaskService),
    engine: sa.Engine = provided(sa.Engine),
) -> HTMLResponse:
    detail = service.get(principal, task_id)  # who may not read it: 404
    with engine.connect() as conn:
        agents = _agents(conn, {a.agent_id for a in detail.attempts})
        run = runs_repository.get(conn, detail.task.run_id, documents=False)
    can_change = service.may_change(principal, detail.task)
    view = TaskPageView(detail=detail, agents=agents, run_name=run.name if run else "its run",
                        can_change=can_change, now=utcnow())  # fmt: skip
    return HTMLResponse(render_task(view, viewer_of(request, principal)))
