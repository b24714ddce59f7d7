"""HTTP for metrics: batches in, summaries and histories out (columnar JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest
from safeboard.metrics.codec import from_wire, to_json_floats
from safeboard.metrics.schemas import HistoryOut, IngestOut, MetricBatch, PointsOut
from safeboard.metrics.service import MetricService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/runs/{run_id}/metrics")

_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": MetricBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            }
        },
    }
}


def _service(request: Request) -> MetricService:
    service: MetricService = request.app.state.metrics
    return service


@router.post("", response_model=IngestOut, openapi_extra=_BATCH_BODY)
async def ingest(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
) -> IngestOut:
    """Store a batch of points, exactly once per ``batch_id``; answered after the commit."""
    body = await request.body()
    try:
        # Validated from the raw bytes by pydantic-core: no intermediate Python objects.
        batch = MetricBatch.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None
    series = {k: from_wire(c.steps, c.times, c.values) for k, c in batch.metrics.items()}
    result = await run_in_threadpool(
        _service(request).ingest, principal, run_id, batch.batch_id, series
    )
    return IngestOut(batch_id=batch.batch_id, stored=result.stored, duplicate=result.duplicate)


@router.get("/{key:path}/points", response_model=PointsOut)
def points(
    request: Request,
    run_id: str,
    key: str,
    start: int | None = Query(None, ge=0),
    end: int | None = Query(None, ge=0),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
) -> PointsOut:
    """Every point of a metric between ``start`` and ``end`` (steps, inclusive)."""
    series = _service(request).series(principal, run_id, key, start, end)
    return PointsOut(
        key=key,
        steps=series.steps.tolist(),
        times=series.times.tolist(),
        values=to_json_floats(series.values),
    )


@router.get("/{key:path}", response_model=HistoryOut)
def history(
    request: Request,
    run_id: str,
    key: str,
    buckets: int = Query(1000, ge=1, le=10_000),
    start: int | None = Query(None, ge=0),
    end: int | None = Query(None, ge=0),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
) -> HistoryOut:
    """A metric downsampled to at most ``buckets`` buckets, each keeping min and max."""
    b = _service(request).history(principal, run_id, key, buckets=buckets, start=start, end=end)
    return HistoryOut(
        key=key,
        first_step=b.first_step.tolist(),
        last_step=b.last_step.tolist(),
        count=b.count.tolist(),
        min=to_json_floats(b.min),
        max=to_json_floats(b.max),
        last=to_json_floats(b.last),
    )
