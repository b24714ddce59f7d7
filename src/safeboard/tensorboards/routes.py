"""HTTP for TensorBoard on the main origin: ``POST /api/v1/tensorboards`` opens an
instance over runs the caller may read (``{"runs": [...]}``: the dashboard's button), or
on a directory of the server (``{"logdir": ...}``: admins, it reads any directory the
server can)."""

from __future__ import annotations

from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, Request

from safeboard.auth.authorizer import ensure
from safeboard.auth.dependencies import client_address, requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.provision import provided
from safeboard.tensorboards.schemas import TensorboardOpen, TensorboardOpened
from safeboard.tensorboards.service import Opened, TensorboardService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tensorboards")


@router.post("", response_model=TensorboardOpened)
async def open_tensorboard(
    request: Request,
    body: TensorboardOpen,
    # Over runs: read access to every one (checked by the use case); on a directory:
    # tensorboard:logdir besides (admins, an admin-scope key or a session).
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    tensorboards: TensorboardService = provided(TensorboardService),
) -> TensorboardOpened:
    address = client_address(request)
    if body.logdir is not None:
        ensure(principal, Permission.TENSORBOARD_LOGDIR)

    def start() -> Opened:
        if body.logdir is not None:
            return tensorboards.open_logdir(
                principal.user_id, principal.username, Path(body.logdir), address=address
            )
        return tensorboards.open_runs(principal, body.runs or [], address=address)

    opened = await to_thread.run_sync(start)
    return TensorboardOpened(id=opened.instance_id, link=opened.link, started=opened.started)
