"""``GET /api/v1/projects/{project}/sorted-runs``: a project's runs sorted by any column
of the dashboard's runs table (name, status, times, a param, a tag, a metric's last
value), filtered by its search language, a page at a time (keyset cursors: the 200th page
costs what the first does). The dashboard's own query (``web/run_table.py``), answered as
JSON for the CLI's ``runs list --sort`` and other clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import Field

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import BadRequest
from safeboard.metrics.codec import json_float
from safeboard.projects.access import project_by_name
from safeboard.provision import provided
from safeboard.runs import repository as runs
from safeboard.runs.routes import MAX_CONFIG_KEY_CHARS, MAX_CONFIG_KEYS, nested_config
from safeboard.runs.schemas import JsonFloat
from safeboard.schemas import Model
from safeboard.web.run_table import TOO_LONG, TableQuery, TableRow, load_page

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


class SortedRunOut(Model):
    id: str
    project: str
    name: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    tags: dict[str, str]
    config: dict[str, Any] = Field(description="The values at the config_key paths, nested.")
    omitted: list[str] = Field(description="config_key paths too long to list.")
    sort_metric: JsonFloat | None = Field(
        None, description="With sort=metrics.<key>: that metric's last value (null: none)."
    )


class SortedPageOut(Model):
    runs: list[SortedRunOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` (same sort and order).")
    total: int = Field(description="How many runs match the filter.")


def _out(row: TableRow, project: str, tags: dict[str, str], metric: str | None) -> SortedRunOut:
    config = {path: value for path, value in row.params.items() if value != TOO_LONG}
    last = row.metrics.get(metric) if metric else None
    return SortedRunOut(
        id=row.id,
        project=project,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        ended_at=row.ended_at,
        tags=tags,
        config=nested_config(config),
        omitted=[path for path, value in row.params.items() if value == TOO_LONG],
        sort_metric=None if last is None else json_float(last),
    )


@router.get("/projects/{project}/sorted-runs", response_model=SortedPageOut)
def sorted_runs(  # noqa: PLR0917  (FastAPI passes each query value as a parameter)
    project: str,
    sort: str = Query(
        "created",
        max_length=300,
        description="created, ended, name, status, params.<path>, tags.<key> or metrics.<key>",
    ),
    order: Literal["asc", "desc"] = "desc",
    filter: str | None = Query(None, max_length=2000, description="The search language."),
    cursor: str | None = Query(None, max_length=1000),
    limit: int = Query(50, ge=1, le=500),
    config_key: list[str] | None = Query(None, max_length=MAX_CONFIG_KEYS),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    engine: sa.Engine = provided(sa.Engine),
) -> SortedPageOut:
    """Runs sorted by ``sort`` (runs without a value last either way), matching ``filter``."""
    paths = config_key or []
    if any(len(path) > MAX_CONFIG_KEY_CHARS for path in paths):
        raise BadRequest(f"config_key: at most {MAX_CONFIG_KEY_CHARS} characters")
    metric = sort.removeprefix("metrics.") if sort.startswith("metrics.") else None
    columns = (*(f"params.{p}" for p in paths), *([sort] if metric else []))
    query = TableQuery(filter or None, sort, order == "desc", cursor or None, limit, columns)
    with engine.connect() as conn:
        found = project_by_name(conn, principal, project, Permission.PROJECTS_READ)
        page = load_page(conn, found.id, query)
        tags = runs.tags_of(conn, [row.id for row in page.rows])
    return SortedPageOut(
        runs=[_out(row, project, tags[row.id], metric) for row in page.rows],
        next_cursor=page.next_cursor,
        total=page.total,
    )
