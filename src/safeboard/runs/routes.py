"""HTTP for runs: ``/api/v1/projects/{project}/runs`` and ``/api/v1/runs/{id}``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from starlette.status import HTTP_201_CREATED

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import BadRequest
from safeboard.metrics.codec import json_float
from safeboard.metrics.repository import Summary
from safeboard.provision import provided
from safeboard.runs.repository import Listed, Run
from safeboard.runs.schemas import (
    MetricSummaryOut,
    RunCreate,
    RunIdsOut,
    RunListedOut,
    RunOut,
    RunPageOut,
    RunUpdate,
)
from safeboard.runs.service import RunService
from safeboard.runs.table import SORT_HELP, RunQuery
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH

__all__ = ["router", "summary_out"]

router = APIRouter(prefix="/api/v1")
MAX_CONFIG_KEYS = 20
MAX_CONFIG_KEY_CHARS = 300
MAX_METRIC_KEYS = 20


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
        omitted=[name for name in ("config", "system") if name in run.withheld],
    )


def nested_config(flat: dict[str, Any]) -> dict[str, Any]:
    """{"opt.lr": 0.1, "seed": 1} -> {"opt": {"lr": 0.1}, "seed": 1}; a path under a value
    already placed (asked for both "opt" and "opt.lr") is in it already."""
    nested: dict[str, Any] = {}
    for path in sorted(flat, key=len):
        *parents, last = path.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(last, flat[path])
    return nested


def listed_out(run: Listed, project: str) -> RunListedOut:
    return RunListedOut(
        id=run.id,
        project=project,
        name=run.name,
        status=run.status,
        created_at=run.created_at,
        ended_at=run.ended_at,
        tags=run.tags,
        config=nested_config(run.config),
        omitted=list(run.omitted),
        metrics={key: json_float(value) for key, value in run.metrics.items()},
    )


@router.post("/projects/{project}/runs", status_code=HTTP_201_CREATED, response_model=RunOut)
def create_run(
    project: str,
    body: RunCreate,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: RunService = provided(RunService),
) -> RunOut:
    """Start a run. Sending the same ``id`` again returns the run made the first time."""
    run = service.create(
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
    project: str,
    cursor: str | None = Query(None, max_length=1000),
    limit: int = Query(50, ge=1, le=500),
    filter: str | None = Query(
        None,
        max_length=2000,
        description='e.g. params.lr > 0.01 and tags.model = "resnet" and status = finished',
    ),
    sort: str = Query("created", max_length=300, description=f"{SORT_HELP}."),
    order: Literal["asc", "desc"] = Query(
        "desc", description="desc: largest (newest) first. Runs without a value come last."
    ),
    config_key: list[str] | None = Query(
        None,
        max_length=MAX_CONFIG_KEYS,
        description="A dotted config path (opt.lr) whose value each listed run carries; "
        f"repeat for more (at most {MAX_CONFIG_KEYS}). Without it, config is {{}}.",
    ),
    metric: list[str] | None = Query(
        None,
        max_length=MAX_METRIC_KEYS,
        description="A metric key whose last value each listed run carries in ``metrics``; "
        f"repeat for more (at most {MAX_METRIC_KEYS}).",
    ),
    count: bool = Query(False, description="Also count the runs that match (``total``)."),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: RunService = provided(RunService),
) -> RunPageOut:
    """Runs sorted by ``sort`` (newest first by default), matching ``filter``; pass
    ``next_cursor`` back as ``cursor`` with the same sort and order. A listed run holds no
    system information or notes, of its config only the values at the ``config_key``
    paths, of its metrics only the last values of the ``metric`` keys (and of a
    ``metrics.<key>`` sort): ``GET /api/v1/runs/{id}`` answers with all."""
    paths, keys = config_key or [], metric or []
    if any(len(path) > MAX_CONFIG_KEY_CHARS for path in paths):
        raise BadRequest(f"config_key: at most {MAX_CONFIG_KEY_CHARS} characters")
    if any(len(key) > MAX_METRIC_KEY_LENGTH for key in keys):
        raise BadRequest(f"metric: at most {MAX_METRIC_KEY_LENGTH} characters")
    by_metric = sort.removeprefix("metrics.") if sort.startswith("metrics.") else None
    query = RunQuery(
        filter_text=filter or None,
        sort=sort,
        descending=order == "desc",
        cursor=cursor or None,
        limit=limit,
        config=tuple(paths),
        metrics=tuple(dict.fromkeys([*keys, *([by_metric] if by_metric else [])])),
        count=count,
    )
    table = service.table(principal, project, query)
    return RunPageOut(
        runs=[listed_out(r, project) for r in table.rows],
        next_cursor=table.next_cursor,
        total=table.total,
    )


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: RunService = provided(RunService),
) -> RunOut:
    run, project, summaries = service.detail(principal, run_id)
    return run_out(run, project.name, summaries)


@router.patch("/runs/{run_id}", response_model=RunOut)
def update_run(
    run_id: str,
    body: RunUpdate,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: RunService = provided(RunService),
) -> RunOut:
    """Finish a run (finished, failed, killed), merge config, set or remove tags, notes."""
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


@router.get("/run-ids", response_model=RunIdsOut)
def run_ids(
    prefix: str = Query(min_length=1, max_length=32, description="Lowercase hex."),
    limit: int = Query(10, ge=1, le=100),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: RunService = provided(RunService),
) -> RunIdsOut:
    """Ids of the runs you can see that start with ``prefix`` (at most ``limit``, sorted):
    how the CLI resolves an id as printed. One id: unique; several: ambiguous."""
    return RunIdsOut(ids=service.ids_starting(principal, prefix, limit))
