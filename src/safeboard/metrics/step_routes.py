"""HTTP for histograms and text per step (issue 17): a batch in, and the run page's
reads. Keys travel in the query (``?histogram=``, ``?text=``), as metric keys do
(metrics/history_routes.py)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest, UnsupportedMediaType
from safeboard.metrics.schemas import MAX_STEP, IngestOut
from safeboard.metrics.step_schemas import (
    DistributionOut,
    HistogramOut,
    StepBatch,
    StepKeysOut,
    TextOut,
    TextsOut,
)
from safeboard.metrics.steps import MAX_DISTRIBUTION_STEPS, StepService
from safeboard.provision import provided
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/runs/{run_id}")
_KEY = {"min_length": 1, "max_length": MAX_METRIC_KEY_LENGTH}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": StepBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            }
        },
    }
}


@router.post("/steps", response_model=IngestOut, openapi_extra=_BODY)
async def ingest(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: StepService = provided(StepService),
) -> IngestOut:
    """Store histograms and texts per step, exactly once per ``batch_id``. A histogram or
    text logged again at the same key and step replaces the earlier one."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", ""):
        raise UnsupportedMediaType("send application/json")
    try:
        batch = StepBatch.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None
    result = await run_in_threadpool(service.ingest, principal, run_id, batch)
    return IngestOut(batch_id=batch.batch_id, stored=result.stored, duplicate=result.duplicate)


@router.get("/steps", response_model=StepKeysOut)
def step_keys(
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: StepService = provided(StepService),
) -> StepKeysOut:
    """The run's histogram and text keys, with their numbers of steps."""
    histograms, texts = service.keys(principal, run_id)
    return StepKeysOut(run_id=run_id, histograms=histograms, texts=texts)


@router.get("/distribution", response_model=DistributionOut)
def distribution(
    run_id: str,
    *,
    histogram: str = Query(..., **_KEY, description="The histogram key."),  # type: ignore[arg-type]
    steps: int = Query(300, ge=1, le=MAX_DISTRIBUTION_STEPS),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: StepService = provided(StepService),
) -> DistributionOut:
    """Percentile bands of a histogram key over at most ``steps`` steps (evenly spread
    over the run, first and last kept): TensorBoard's distribution view."""
    found = service.distribution(principal, run_id, histogram, steps)
    return DistributionOut(
        key=found.key, total_steps=found.total_steps, steps=found.steps,
        percentiles=found.percentiles,
    )  # fmt: skip


@router.get("/histogram", response_model=HistogramOut)
def histogram_at(
    run_id: str,
    *,
    histogram: str = Query(..., **_KEY, description="The histogram key."),  # type: ignore[arg-type]
    step: int | None = Query(None, ge=0, le=MAX_STEP, description="Default: the last."),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: StepService = provided(StepService),
) -> HistogramOut:
    """One histogram's buckets: the one at ``step``, or the last before it."""
    at, time, edges, counts = service.histogram(principal, run_id, histogram, step)
    return HistogramOut(key=histogram, step=at, time=time, edges=edges, counts=counts)


@router.get("/texts", response_model=TextsOut)
def texts(
    run_id: str,
    *,
    text: str = Query(..., **_KEY, description="The text key."),  # type: ignore[arg-type]
    start: int = Query(0, ge=0, le=MAX_STEP),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: StepService = provided(StepService),
) -> TextsOut:
    """A text key's entries from step ``start`` on, in step order."""
    page, next_step = service.texts(principal, run_id, text, start, limit)
    return TextsOut(
        key=text, texts=[TextOut(step=s, time=t, text=x) for s, t, x in page],
        next_step=next_step,
    )  # fmt: skip
