"""HTTP for TensorBoard on the main origin: ``POST /api/v1/tensorboards`` opens an
instance on a directory of the server (admins: it reads any directory the server can)."""

from __future__ import annotations

from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, Request

from safeboard.auth.dependencies import client_address, requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.provision import provided
from safeboard.tensorboards.schemas import LogdirOpen, TensorboardOpened
from safeboard.tensorboards.service import TensorboardService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tensorboards")


@router.post("", response_model=TensorboardOpened)
async def open_logdir(
    request: Request,
    body: LogdirOpen,
    principal: Principal = requires(Permission.TENSORBOARD_LOGDIR),
    tensorboards: TensorboardService = provided(TensorboardService),
) -> TensorboardOpened:
    address = client_address(request)

    def start() -> TensorboardOpened:
        opened = tensorboards.open_logdir(
            principal.user_id, principal.username, Path(body.logdir), address=address
        )
        return TensorboardOpened(id=opened.instance_id, link=opened.link, started=opened.started)

    return await to_thread.run_sync(start)
