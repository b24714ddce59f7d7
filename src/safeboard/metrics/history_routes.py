"""HTTP for metric reads: histories (several keys in one request, downsampled, or a live
chart's tail) and every point of one key. The key travels in the query (``?metric=``),
so no key, whatever it ends with, can read as another route. (Not ``?key=``: a parameter
of that name reads as a credential in the URL and is refused, api/guards.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import BadRequest
from safeboard.heap import released
from safeboard.metrics.codec import Buckets, to_json_floats
from safeboard.metrics.schemas import MAX_STEP, HistoryOut, PointsOut, Step
from safeboard.metrics.service import MAX_BUCKETS, MetricService, Tail
from safeboard.provision import provided
from safeboard.vocabulary import MAX_HISTORY_KEYS, MAX_METRIC_KEY_LENGTH

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/runs/{run_id}")
_JSON = "application/json"


def _floats(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | list[float | str]:
    """The array itself when every value is finite (orjson writes it from memory), else
    the list with NaN and infinities spelt as the ingest API spells them."""
    return values if bool(np.all(np.isfinite(values))) else to_json_floats(values)


def _json(body: dict[str, Any]) -> Response:
    # Written straight from the arrays: building and validating 3,000,000 Python objects
    # took five times longer than the encoding itself (P2: >= 1M points/s).
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=_JSON)


@router.get("/points", response_model=PointsOut)
def points(
    run_id: str,
    *,
    metric: list[str] = Query(
        ..., max_length=1, description="The metric key (one: /history takes several)."
    ),
    start: int | None = Query(None, ge=0, le=MAX_STEP),
    end: int | None = Query(None, ge=0, le=MAX_STEP),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: MetricService = provided(MetricService),
) -> Response:
    """Every point of ``metric`` between ``start`` and ``end`` (steps, inclusive), in
    step order. The body is streamed (chunked), a few hundred thousand points at a time:
    an export holds about the same memory for any length of history."""
    # A list, so that a second ?metric= is refused rather than silently read instead.
    key = metric[0]
    if not 1 <= len(key) <= MAX_METRIC_KEY_LENGTH:
        raise BadRequest(f"metric: 1 to {MAX_METRIC_KEY_LENGTH} characters")
    export = service.export(principal, run_id, key, start, end)
    return StreamingResponse(released(export.json()), media_type=_JSON)


def _shaped(answer: Buckets | Tail) -> dict[str, Any]:
    if isinstance(answer, Tail):
        tail = answer.series
        return {"after_step": answer.after_step, "steps": tail.steps,
                "values": _floats(tail.values)}  # fmt: skip
    return {"last_step": answer.last_step, "min": _floats(answer.min),
            "max": _floats(answer.max), "last": _floats(answer.last)}  # fmt: skip


@router.get("/history", response_model=HistoryOut)
def history(
    run_id: str,
    *,
    metric: list[str] = Query(
        ..., description=f"A metric key; repeat it (at most {MAX_HISTORY_KEYS})."
    ),
    buckets: int = Query(1000, ge=1, le=MAX_BUCKETS),
    start: int | None = Query(None, ge=0, le=MAX_STEP),
    end: int | None = Query(None, ge=0, le=MAX_STEP),
    after_step: list[Step] | None = Query(
        None,
        description="A live chart's last step: the points after it, raw (one per metric, "
        "in the order of the metrics, or one for all). Not with start or end.",
    ),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: MetricService = provided(MetricService),
) -> Response:
    """Metrics downsampled to at most ``buckets`` buckets each (min, max and last per
    bucket), several keys in one request; with ``after_step``, each key's new points."""
    answers = service.histories(
        principal, run_id, metric, buckets=buckets, start=start, end=end, after=after_step
    )
    metrics = {k: _shaped(answer) for k, answer in answers.items()}
    return _json({"run_id": run_id, "buckets": buckets, "metrics": metrics})
