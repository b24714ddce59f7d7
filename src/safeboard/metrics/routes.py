"""HTTP for metrics: batches in (JSON or packed columns). Histories and points go out
through metrics/history_routes.py."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from safeboard import wire
from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest, UnsupportedMediaType
from safeboard.metrics.batches import from_json_columns
from safeboard.metrics.codec import Series
from safeboard.metrics.schemas import (
    CompactHeader,
    IngestOut,
    MetricBatch,
    PackedHeader,
)
from safeboard.metrics.service import MetricService
from safeboard.provision import provided

__all__ = ["parse_compact", "router"]

router = APIRouter(prefix="/api/v1/runs/{run_id}/metrics")
_JSON = "application/json"

_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": MetricBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            },
            wire.MEDIA_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": (
                        "The same batch packed as little-endian arrays (layout: "
                        "safeboard.wire); what the SDK sends."
                    ),
                }
            },
            wire.COMPACT_MEDIA_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": (
                        "The same batch with its steps and values in compact forms where "
                        "no bit is lost (layout: safeboard.wire, SBC2); what "
                        "`safeboard import tensorboard` sends."
                    ),
                }
            },
        },
    }
}


def _invalid(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return InvalidRequest(f"{prefix}{where}: {first['msg']}")


def _validated(model: type[BaseModel], raw: bytes, prefix: str = "") -> BaseModel:
    try:
        # Validated from the raw bytes by pydantic-core: no intermediate Python objects.
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc, prefix) from None


def _from_json(body: bytes) -> tuple[str, Iterator[tuple[str, Series]]]:
    """The batch's shape; its arrays are made as ``validate_batch`` asks for them."""
    batch = _validated(MetricBatch, body)
    assert isinstance(batch, MetricBatch)  # noqa: S101
    pairs = (
        (k, from_json_columns(k, c.steps, c.times, c.values)) for k, c in batch.metrics.items()
    )
    return batch.batch_id, pairs


def _from_packed(body: bytes) -> tuple[str, Iterator[tuple[str, Series]]]:
    """The binary columns are read in place (numpy views of the body, made as
    ``validate_batch`` asks for them); only the header is JSON."""
    if wire.is_compact(body):
        raise InvalidRequest(f"body: not SBC1 (an SBC2 body is sent as {wire.COMPACT_MEDIA_TYPE})")
    try:
        packed = wire.split(body)
        header = _validated(PackedHeader, packed.header, "header.")
        assert isinstance(header, PackedHeader)  # noqa: S101
        arrays = wire.iter_columns(packed.data, [n for _, n in header.metrics])
    except wire.WireError as exc:
        raise InvalidRequest(str(exc)) from None
    pairs = ((key, Series(*views)) for (key, _), views in zip(header.metrics, arrays, strict=True))
    return header.batch_id, pairs


def parse_compact(body: bytes) -> tuple[str, Iterator[tuple[str, Series]]]:
    """Times read in place; steps and values made from their forms (``safeboard.wire``,
    SBC2), each checked against the header first."""
    if not wire.is_compact(body):
        raise InvalidRequest(f"body: not SBC2 (an SBC1 body is sent as {wire.MEDIA_TYPE})")
    try:
        packed = wire.split(body)
        header = _validated(CompactHeader, packed.header, "header.")
        assert isinstance(header, CompactHeader)  # noqa: S101
        arrays = wire.compact_columns(packed.data, [(n, s, v) for _, n, s, v in header.metrics])
    except wire.WireError as exc:
        raise InvalidRequest(str(exc)) from None
    pairs = (
        (metric[0], Series(*views)) for metric, views in zip(header.metrics, arrays, strict=True)
    )
    return header.batch_id, pairs


_PARSERS = {
    "application/json": _from_json, "": _from_json,
    wire.MEDIA_TYPE: _from_packed, wire.COMPACT_MEDIA_TYPE: parse_compact,
}  # fmt: skip


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@router.post("", response_model=IngestOut, openapi_extra=_BATCH_BODY)
async def ingest(
    request: Request,
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: MetricService = provided(MetricService),
) -> IngestOut:
    """Store a batch of points, exactly once per ``batch_id``; answered after the commit.
    The body is JSON, or the same columns packed as binary arrays, plain or compact
    (``safeboard.wire``)."""
    parse = _PARSERS.get(_media_type(request))
    if parse is None:
        raise UnsupportedMediaType(
            f"send application/json, {wire.MEDIA_TYPE} or {wire.COMPACT_MEDIA_TYPE}"
        )
    body = await request.body()
    batch_id, series = parse(body)
    result = await run_in_threadpool(service.ingest, principal, run_id, batch_id, series)
    return IngestOut(batch_id=batch_id, stored=result.stored, duplicate=result.duplicate)
