"""Server-sent events: live updates of a project's runs, or of one run, for the dashboard.

``GET /api/v1/projects/{project}/events`` and ``GET /api/v1/runs/{run_id}/events`` send
``event: metrics`` (a run got points: its keys and last steps), ``event: media`` (new
histogram, image or text steps: their keys and last steps) and ``event: run`` (created,
finished, ...), each with an ``id:`` (safeboard.events: the same on every replica and
across restarts), plus a comment every 15 s to keep proxies from closing the stream.

A stream that reconnects with ``Last-Event-ID`` first receives the events it missed, under
the same authorization as live ones, within the last ``REPLAY_SECONDS`` and
``REPLAY_LIMIT`` events; beyond them it receives ``event: reset`` (reload what the page
shows) and goes on from there.

A stream lasts only while its credential and its grant do (runs/streams.py): when either
ends, it sends ``event: end`` with ``{"error": {"code", "message"}}`` and closes, within a
second, on every replica. At a graceful stop of the server it sends ``event: closing``
with ``retry:`` and closes at once: the browser reconnects. An account holds at most
``server.event_streams_per_user`` open streams per replica; one more gets 429
``too_many_streams``.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.events import CLOSING, Event, EventBus, Replay
from safeboard.projects.access import project_by_name
from safeboard.provision import provided
from safeboard.runs.service import RunService
from safeboard.runs.streams import END, StreamGuard

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 1000  # when a browser reconnects after a stream closed (a restart takes ~1 s)
_STOPPING = json.dumps({"reason": "the server is stopping"})
_CLOSING = f"retry: {RETRY_MS}\nevent: {CLOSING}\ndata: {_STOPPING}\n\n"
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream."}
}


# A run's stream ends when the run goes to the trash (safeboard.trash announces it with a
# "run" event whose status is "deleted"): what it would send next is hidden.
_RUN_DELETED = json.dumps(
    {"error": {"code": "not_found", "message": "the run was deleted: its stream ended"}}
)


def _deleted(event: Event) -> bool:
    return event.kind == "run" and event.data.get("status") == "deleted"


def _frame(event: Event) -> str:
    head = f"id: {event.id}\n" if event.id else ""
    return f"{head}event: {event.kind}\ndata: {event.to_json()}\n\n"


def last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` a reconnecting browser sends, when it is one of ours."""
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 19 else None


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
    after = last_event_id(request)

    async def catch_up() -> Replay:
        if after is None:
            return Replay([])
        try:
            return await run_in_threadpool(bus.replay, after, project_id, run_id)
        except SQLAlchemyError:  # the database is away: the page reloads when it can
            return Replay([], reset=True)

    async def events() -> AsyncIterator[str]:
        try:
            with bus.subscribe(project_id, run_id) as subscription:
                ticket.attach(subscription)
                yield f"retry: {RETRY_MS}\n: connected\n\n"
                # Live events queue up meanwhile; those replayed are not sent twice.
                missed = await catch_up()
                replayed = {event.id for event in missed.events}
                for event in missed.events:
                    yield _frame(event)
                if missed.reset:
                    head = f"id: {missed.newest}\n" if missed.newest else ""
                    yield f"{head}event: reset\ndata: {{}}\n\n"
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
                    if subscription.closing:
                        yield _CLOSING
                        return
                    if event.id not in replayed:
                        yield _frame(event)
                    if run_id is not None and _deleted(event):  # the run went to the trash
                        yield f"event: {END}\ndata: {_RUN_DELETED}\n\n"
                        return
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
    """Live updates of every run in the project. Each event has an ``id:``; with
    ``Last-Event-ID`` the stream first replays what followed it (or sends ``reset``)."""

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
    """Live updates of one run; ``Last-Event-ID`` as for the project's stream."""
    run, _ = await run_in_threadpool(service.get, principal, run_id, Permission.PROJECTS_READ)
    return _stream(request, principal, run.project_id, run.id, bus=bus, guard=guard)
