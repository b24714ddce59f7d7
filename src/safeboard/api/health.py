"""``GET /healthz``: liveness and database reachability, nothing more. Public."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from safeboard.auth.dependencies import PUBLIC
from safeboard.provision import provided
from safeboard.storage import ping

__all__ = ["router"]

router = APIRouter()


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str
    database: str


@router.head("/healthz", include_in_schema=False, dependencies=[PUBLIC])
@router.get(
    "/healthz",
    dependencies=[PUBLIC],
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable."}},
    summary="Liveness and database reachability",
)
async def healthz(engine: sa.Engine = provided(sa.Engine)) -> JSONResponse:
    reachable = await run_in_threadpool(ping, engine)
    body = Health(
        status="ok" if reachable else "degraded", database="ok" if reachable else "unreachable"
    )
    return JSONResponse(body.model_dump(), status_code=200 if reachable else 503)
