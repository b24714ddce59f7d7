"""``GET /healthz``: liveness and each dependency's state, nothing more. Public.

``database``: whether it answers ``SELECT 1`` (``ok`` or ``unreachable``). ``disk`` (the
data directory's filesystem) and ``artifact_disk`` (the artifact store's, the same answer
when they share one): ``ok``, ``low`` (free space under ``server.min_free_disk_bytes``),
``full``, ``unwritable`` (read-only, or not writable by the server) or ``missing``. Any
state but ``ok`` makes the answer 503 ``degraded``. States only: paths are the operator's
business (docs/security.md, S17). A ``statvfs`` and a ``SELECT 1``: cheap to poll.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from safeboard.auth.dependencies import PUBLIC
from safeboard.datadir import DISK_OK, disk_state
from safeboard.provision import provided
from safeboard.settings import Settings
from safeboard.storage import ping

__all__ = ["Health", "router"]

router = APIRouter()

OK = DISK_OK


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str
    database: str
    disk: str
    artifact_disk: str


def _check(engine: sa.Engine, settings: Settings) -> Health:
    floor = settings.server.min_free_disk_bytes
    database = OK if ping(engine) else "unreachable"
    disk = disk_state(settings.data_dir, floor)
    artifact_disk = disk_state(settings.artifact_dir, floor)
    healthy = database == disk == artifact_disk == OK
    return Health(
        status=OK if healthy else "degraded",
        database=database,
        disk=disk,
        artifact_disk=artifact_disk,
    )


@router.head("/healthz", include_in_schema=False, dependencies=[PUBLIC])
@router.get(
    "/healthz",
    dependencies=[PUBLIC],
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "A dependency is degraded: the database unreachable, or a disk "
            "low, full or unwritable.",
        }
    },
    summary="Liveness and the state of the database and disks",
)
async def healthz(
    engine: sa.Engine = provided(sa.Engine), settings: Settings = provided(Settings)
) -> JSONResponse:
    body = await run_in_threadpool(_check, engine, settings)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == OK else 503)
