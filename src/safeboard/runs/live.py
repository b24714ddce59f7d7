"""Server-sent events: live updates of a project's runs, or of one run, for the dashboard.

``GET /api/v1/projects/{project}/events`` and ``GET /api/v1/runs/{run_id}/events`` send
``event: metrics`` (a run got points: its keys and last steps) and ``event: run`` (created,
finished, ...), plus a comment every 15 s to keep proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.events import EventBus
from safeboard.projects.access import project_by_name
from safeboard.runs.service import RunService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
KEEPALIVE_SECONDS = 15.0
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream."}
}


def _stream(request: Request, project_id: int, run_id: str | None) -> StreamingResponse:
    bus: EventBus = request.app.state.events

    async def events() -> AsyncIterator[str]:
        with bus.subscribe(project_id, run_id) as subscription:
            yield "retry: 3000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event.kind}\ndata: {event.to_json()}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


@router.get("/projects/{project}/events", responses=_SSE, response_class=StreamingResponse)
async def project_events(
    request: Request,
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
) -> StreamingResponse:
    """Live updates of every run in the project."""
    service: RunService = request.app.state.runs

    def find() -> int:
        with service.engine.connect() as conn:
            return project_by_name(conn, principal, project, Permission.PROJECTS_READ).id

    return _stream(request, await run_in_threadpool(find), None)


@router.get("/runs/{run_id}/events", responses=_SSE, response_class=StreamingResponse)
async def run_events(
    request: Request, run_id: str, principal: Principal = requires_project(Permission.PROJECTS_READ)
) -> StreamingResponse:
    """Live updates of one run."""
    service: RunService = request.app.state.runs
    run, _ = await run_in_threadpool(service.get, principal, run_id, Permission.PROJECTS_READ)
    return _stream(request, run.project_id, run.id)
