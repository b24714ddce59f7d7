"""HTTP for runs: ``/api/v1/projects/{project}/runs`` and ``/api/v1/runs/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.status import HTTP_201_CREATED

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.metrics.codec import json_float
from safeboard.metrics.repository import Summary
from safeboard.runs.repository import Run
from safeboard.runs.schemas import MetricSummaryOut, RunCreate, RunOut, RunPageOut, RunUpdate
from safeboard.runs.service import RunService

__all__ = ["router", "summary_out"]

router = APIRouter(prefix="/api/v1")


def _service(request: Request) -> RunService:
    service: RunService = request.app.state.runs
    return service


def summary_out(summary: Summary) -> MetricSummaryOut:
    return MetricSummaryOut(
        key=summary.key,
        count=summary.count,
        last_step=summary.last_step,
        last_value=json_float(summary.last_value),
        min=None if summary.min is None else json_float(summary.min),
        max=None if summary.max is None else json_float(summary.max),
    )


def run_out(run: Run, project: str, summaries: list[Summary] | None = None) -> RunOut:
    return RunOut(
        id=run.id,
        project=project,
        name=run.name,
        status=run.status,
        created_at=run.created_at,
        ended_at=run.ended_at,
        config=run.params,
        tags=run.tags,
        system=run.system,
        notes=run.notes,
        metrics=[summary_out(s) for s in summaries or []],
    )


@router.post("/projects/{project}/runs", status_code=HTTP_201_CREATED, response_model=RunOut)
def create_run(
    request: Request,
    project: str,
    body: RunCreate,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
) -> RunOut:
    """Start a run. Sending the same ``id`` again returns the run made the first time."""
    run = _service(request).create(
        principal,
        project,
        run_id=body.id,
        name=body.name,
        params=body.config,
        tags=body.tags,
        system=body.system,
        notes=body.notes,
    )
    return run_out(run, project)


@router.get("/projects/{project}/runs", response_model=RunPageOut)
def list_runs(
    request: Request,
    project: str,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    filter: str | None = Query(
        None,
        max_length=2000,
        description='e.g. params.lr > 0.01 and tags.model = "resnet" and status = finished',
    ),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
) -> RunPageOut:
    """Runs, newest first, matching ``filter``; pass ``next_cursor`` back as ``cursor``."""
    page = _service(request).page(
        principal, project, cursor=cursor, limit=limit, filter_text=filter
    )
    return RunPageOut(runs=[run_out(r, project) for r in page.runs], next_cursor=page.next_cursor)


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(
    request: Request, run_id: str, principal: Principal = requires_project(Permission.PROJECTS_READ)
) -> RunOut:
    run, project = _service(request).get(principal, run_id, Permission.PROJECTS_READ)
    summaries = request.app.state.metrics.summaries(principal, run_id)
    return run_out(run, project.name, summaries)


@router.patch("/runs/{run_id}", response_model=RunOut)
def update_run(
    request: Request,
    run_id: str,
    body: RunUpdate,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
) -> RunOut:
    """Finish a run (finished, failed, killed), merge config, set or remove tags, notes."""
    service = _service(request)
    run = service.update(
        principal,
        run_id,
        status=body.status,
        params=body.config,
        tags=body.tags,
        notes=body.notes,
    )
    _, project = service.get(principal, run_id, Permission.PROJECTS_READ)
    return run_out(run, project.name)
