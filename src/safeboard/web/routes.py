"""Pages. Sign-in pages and the home shell are public (they hold no data); every other
page declares the permission it needs, like an API route, and is rendered on the server
from the same services, escaped by construction (web/html.py).

A browser without a session is sent to the sign-in form; API clients get the usual JSON
errors (web/responses.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, Response

from safeboard.accounts.users import UserService
from safeboard.agents.service import AgentService
from safeboard.audit import service as audit_service
from safeboard.auth.authorizer import allowed
from safeboard.auth.dependencies import (
    PUBLIC,
    auth_context,
    public_origin,
    reachable_by_others,
    requires,
    requires_project,
    session_cookie,
)
from safeboard.auth.permissions import CredentialKind, Permission
from safeboard.auth.principal import Principal
from safeboard.clock import utcnow
from safeboard.errors import BadRequest, NotFound
from safeboard.jobs.repository import task_of_run
from safeboard.jobs.service import TaskService
from safeboard.metrics.repository import summaries as metric_summaries
from safeboard.projects import repository as projects_repository
from safeboard.projects.service import ProjectService
from safeboard.provision import provided
from safeboard.runs.access import run_access
from safeboard.runs.projection import is_param_path
from safeboard.runs.service import RunService
from safeboard.runs.table import RunQuery, split_columns
from safeboard.schemas import ROW_ID_MAX
from safeboard.tensorboards.service import TensorboardService
from safeboard.trash.service import TrashService
from safeboard.web.account_page import render_account
from safeboard.web.admin_pages import (
    AuditFilter,
    render_audit,
    render_grants,
    render_sessions,
    render_users,
)
from safeboard.web.agents_page import render_agents
from safeboard.web.assets import STATIC_DIR, VersionedStaticFiles, asset
from safeboard.web.compare_page import MAX_COMPARED, Compared, render_compare
from safeboard.web.home_page import render_home
from safeboard.web.layout import Viewer
from safeboard.web.project_page import ProjectView, default_columns, render_project
from safeboard.web.responses import PageRoute
from safeboard.web.run_again_page import render_run_again
from safeboard.web.run_page import CHART_LIBRARY, RunView, render_run

__all__ = ["router", "static_files", "viewer_of"]

PAGES_DIR = Path(__file__).with_name("pages")
PAGE_SIZE = 50
MAX_COLUMNS = 40

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@cache
def _page(name: str) -> str:
    """A static HTML page, its /static/ links under the current build id."""
    text = (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")
    return text.replace('="/static/', f'="{asset("")}')


def viewer_of(request: Request, principal: Principal) -> Viewer:
    csrf = None
    if principal.credential is CredentialKind.SESSION:
        csrf = auth_context(request).auth.csrf_token(session_cookie(request) or "")
    return Viewer(principal.username, principal.role, csrf)


@router.get("/", response_class=HTMLResponse, dependencies=[PUBLIC])
def home(request: Request) -> HTMLResponse:
    home = render_home(public_origin(request), reachable=reachable_by_others(request))
    return HTMLResponse(home)


@router.get("/login", response_class=HTMLResponse, dependencies=[PUBLIC])
def login_page() -> HTMLResponse:
    return HTMLResponse(_page("login"))


@router.get("/invite", response_class=HTMLResponse, dependencies=[PUBLIC])
def invite_page() -> HTMLResponse:
    return HTMLResponse(_page("invite"))


@cache
def _worker_script() -> bytes:
    return (STATIC_DIR / "sw.js").read_bytes()


@router.get("/sw.js", dependencies=[PUBLIC])
def service_worker() -> Response:
    """The service worker that sends the session's binding with every request of the
    pages (auth/binding.py). At the root, so that its scope covers the whole origin."""
    return Response(_worker_script(), media_type="text/javascript")


@router.get("/projects/{name}", response_class=HTMLResponse)
def project_page(
    request: Request,
    name: str,
    filter: str | None = Query(None, max_length=2000),
    sort: str = Query("created", max_length=300),
    order: Literal["asc", "desc"] = "desc",
    cursor: str | None = Query(None, max_length=1000),
    col: list[str] | None = Query(None, max_length=MAX_COLUMNS),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    runs: RunService = provided(RunService),
    trash: TrashService = provided(TrashService),
) -> HTMLResponse:
    """The runs table. ``col`` picks columns (``metrics.loss``, ``params.lr``, ...)."""
    problem, table = None, None
    chosen = [c[:300] for c in col or [] if c.startswith(("params.", "tags.", "metrics."))]
    project, keys = runs.columns(principal, name)
    columns = chosen if col is not None else default_columns(keys.params, keys.metrics)
    shown = split_columns([c for c in columns if not c.startswith("params.") or
                           is_param_path(c[7:])])  # fmt: skip
    query = RunQuery(
        filter_text=filter or None,
        sort=sort,
        descending=order == "desc",
        cursor=cursor or None,
        limit=PAGE_SIZE,
        config=shown["params"],
        tags=shown["tags"],
        metrics=shown["metrics"],
        count=True,
    )
    try:
        table = runs.table(principal, name, query)
    except BadRequest as exc:
        problem = exc.message
    view = ProjectView(
        project=project,
        query=query,
        columns=columns,
        chose_columns=col is not None,
        page=table,
        problem=problem,
        keys=keys,
        now=utcnow(),
        server_url=public_origin(request),
        reachable=reachable_by_others(request),
        can_delete=Permission.PROJECTS_WRITE in trash.permissions(principal, project.id),
    )
    html = render_project(view, viewer_of(request, principal))
    return HTMLResponse(html, status_code=400 if problem else 200)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    engine: sa.Engine = provided(sa.Engine),
    tensorboards: TensorboardService = provided(TensorboardService),
) -> HTMLResponse:
    with engine.connect() as conn:  # one connection, one access walk
        found = run_access(conn, principal, run_id, Permission.PROJECTS_READ, documents=True)
        summaries = metric_summaries(conn, run_id)
        made_by = task_of_run(conn, run_id)  # the link back to its task
    can_edit = found.may(principal, Permission.PROJECTS_WRITE)  # what PATCH will check
    view = RunView(
        found.run, found.project, summaries, utcnow(), CHART_LIBRARY.is_file(), can_edit,
        task_id=made_by.id if made_by else None,
        run_again=can_edit and made_by is not None,  # a task's run, and the viewer may submit
        tensorboard=bool(tensorboards.with_event_files([run_id])),
    )  # fmt: skip
    return HTMLResponse(render_run(view, viewer_of(request, principal)))


@router.get("/runs/{run_id}/run-again", response_class=HTMLResponse)
def run_again_page(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    engine: sa.Engine = provided(sa.Engine),
    tasks: TaskService = provided(TaskService),
) -> HTMLResponse:
    """Run again: the form for a new task from the task that made this run."""
    with engine.connect() as conn:
        found = run_access(conn, principal, run_id, Permission.PROJECTS_WRITE, documents=True)
    task = tasks.of_run(principal, run_id)
    if task is None:
        raise NotFound(f"run {run_id} was not made by a task")
    viewer = viewer_of(request, principal)
    return HTMLResponse(render_run_again(viewer, found.run, found.project, task))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    run: list[str] | None = Query(None, max_length=MAX_COMPARED),
    all: bool = False,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    engine: sa.Engine = provided(sa.Engine),
    tensorboards: TensorboardService = provided(TensorboardService),
) -> HTMLResponse:
    """``?run=<id>&run=<id>...``: what differs between these runs."""
    compared = []
    with engine.connect() as conn:  # one connection, a walk per run
        for run_id in dict.fromkeys(run or []):
            found = run_access(conn, principal, run_id, Permission.PROJECTS_READ, documents=True)
            compared.append(Compared(found.run, found.project, metric_summaries(conn, run_id)))
    html = render_compare(
        compared,
        viewer_of(request, principal),
        show_all=all,
        charts_available=CHART_LIBRARY.is_file(),
        tensorboard_runs=sorted(tensorboards.with_event_files([c.run.id for c in compared])),
    )
    return HTMLResponse(html)


@router.get("/account", response_class=HTMLResponse)
def account_page(
    request: Request,
    principal: Principal = requires(Permission.ACCOUNT_READ),
    projects: ProjectService = provided(ProjectService),
) -> HTMLResponse:
    visible = [p for p, _ in projects.visible(principal)]
    html = render_account(viewer_of(request, principal), visible, public_origin(request))
    return HTMLResponse(html)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    principal: Principal = requires(Permission.USERS_READ),
    users: UserService = provided(UserService),
) -> HTMLResponse:
    return HTMLResponse(render_users(viewer_of(request, principal), users.list_all()))


@router.get("/admin/grants", response_class=HTMLResponse)
def grants_page(
    request: Request,
    principal: Principal = requires(Permission.USERS_MANAGE),
    accounts: UserService = provided(UserService),
    projects: ProjectService = provided(ProjectService),
    engine: sa.Engine = provided(sa.Engine),
) -> HTMLResponse:
    users = accounts.list_all()
    names = {user.id: user.username for user in users}
    listed = []
    with engine.connect() as conn:
        for project, _ in projects.visible(principal):
            held = projects_repository.grants(conn, project.id)
            listed.append((project, {names[uid]: role for uid, role in held.items()}))
    return HTMLResponse(render_grants(viewer_of(request, principal), listed, users))


AUDIT_PAGE = 100


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    action: str | None = Query(None, max_length=64),
    since: str | None = Query(None, max_length=40),
    actor: str | None = Query(None, max_length=200),
    before: int | None = Query(None, ge=1, le=ROW_ID_MAX),
    principal: Principal = requires(Permission.AUDIT_READ),
    engine: sa.Engine = provided(sa.Engine),
) -> HTMLResponse:
    """Newest first; ``since`` is a UTC date and time (the form's datetime-local)."""
    try:
        start = datetime.fromisoformat(since) if since else None
        if start is not None:  # without a zone (the form's datetime-local): UTC
            start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone past the calendar's ends
        raise BadRequest("since: a date and time such as 2026-11-23T08:00") from None
    entries = audit_service.list_entries(
        engine,
        since=start,
        action=action or None,
        actor_contains=actor or None,
        before_id=before,
        limit=AUDIT_PAGE + 1,
        newest_first=True,
    )
    older = entries[AUDIT_PAGE - 1].id if len(entries) > AUDIT_PAGE else None
    chosen = AuditFilter(action or None, since or None, actor or None, before)
    viewer = viewer_of(request, principal)
    return HTMLResponse(render_audit(viewer, entries[:AUDIT_PAGE], chosen, older))


@router.get("/admin/sessions", response_class=HTMLResponse)
def sessions_page(
    request: Request,
    principal: Principal = requires(Permission.USERS_READ),
    users: UserService = provided(UserService),
) -> HTMLResponse:
    found = [(user, users.sessions(user.username)) for user in users.list_all()]
    listed = [(user, sessions) for user, sessions in found if sessions]
    return HTMLResponse(render_sessions(viewer_of(request, principal), listed))


@router.get("/admin/agents", response_class=HTMLResponse)
def agents_page(
    request: Request,
    principal: Principal = requires(Permission.ACCOUNT_READ),
    agents: AgentService = provided(AgentService),
) -> HTMLResponse:
    """Admins only; anyone else is told there is no such page (404), as the API's
    agent routes are not theirs to discover."""
    if not allowed(principal, Permission.AGENTS_MANAGE):
        raise NotFound("no such page")
    return HTMLResponse(render_agents(viewer_of(request, principal), agents.list_with_work()))


def static_files() -> VersionedStaticFiles:
    return VersionedStaticFiles()
