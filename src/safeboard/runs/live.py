"""Server-sent events: live updates of a project's runs, or of one run, for the dashboard.

``GET /api/v1/projects/{project}/events`` and ``GET /api/v1/runs/{run_id}/events`` send
``event: metrics`` (a run got points: its keys and last steps) and ``event: run`` (created,
finished, ...), plus a comment every 15 s to keep proxies from closing the stream.

A stream lasts only while its credential and its grant do (runs/streams.py): when either
ends, it sends ``event: end`` with ``{"error": {"code", "message"}}`` and closes, within a
second, on every replica. An account holds at most ``server.event_streams_per_user`` open
streams per replica; one more gets 429 ``too_many_streams``.
"""

from __future__ import annotations

import asyncio
import json
import weakref
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
from safeboard.provision import provided
from safeboard.runs.service import RunService
from safeboard.runs.streams import END, StreamGuard

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
KEEPALIVE_SECONDS = 15.0
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream."}
}


def _stream(
    request: Request,
    principal: Principal,
    project_id: int,
    run_id: str | None,
    *,
    bus: EventBus,
    guard: StreamGuard,
) -> StreamingResponse:
    ticket = guard.admit(principal, project_id)  # 429 beyond the per-account cap

    async def events() -> AsyncIterator[str]:
        try:
            with bus.subscribe(project_id, run_id) as subscription:
                ticket.attach(subscription)
                yield "retry: 3000\n: connected\n\n"
                while not await request.is_disconnected():
                    try:
                        event = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    # The credential or the grant ended: nothing more is sent, not even
                    # events queued before the END event (or that pushed it out of a full
                    # queue).
                    ended = ticket.end_data()
                    if ended is not None:
                        yield f"event: {END}\ndata: {json.dumps(ended)}\n\n"
                        return
                    yield f"event: {event.kind}\ndata: {event.to_json()}\n\n"
        finally:
            ticket.close()

    body = events()
    weakref.finalize(body, ticket.close)  # also when the body is never iterated at all
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


@router.get("/projects/{project}/events", responses=_SSE, response_class=StreamingResponse)
async def project_events(
    request: Request,
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    *,
    service: RunService = provided(RunService),
    bus: EventBus = provided(EventBus),
    guard: StreamGuard = provided(StreamGuard),
) -> StreamingResponse:
    """Live updates of every run in the project."""

    def find() -> int:
        with service.engine.connect() as conn:
            return project_by_name(conn, principal, project, Permission.PROJECTS_READ).id

    project_id = await run_in_threadpool(find)
    return _stream(request, principal, project_id, None, bus=bus, guard=guard)


@router.get("/runs/{run_id}/events", responses=_SSE, response_class=StreamingResponse)
async def run_events(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    *,
    service: RunService = provided(RunService),
    bus: EventBus = provided(EventBus),
    guard: StreamGuard = provided(StreamGuard),
) -> StreamingResponse:
    """Live updates of one run."""
    run, _ = await run_in_threadpool(service.get, principal, run_id, Permission.PROJECTS_READ)
    return _stream(request, principal, run.project_id, run.id, bus=bus, guard=guard)
