"""HTTP for artifacts: declare, upload (resumable, streamed), download (streamed, Range,
ETag), list, delete, and signed preview links for the browser (S12)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from safeboard.artifacts import repository as artifacts_repository
from safeboard.artifacts.ranges import (
    FILE_CONTENT_SECURITY_POLICY,
    INLINE_TYPES,
    Unsatisfiable,
    content_disposition,
    parse_range,
)
from safeboard.artifacts.repository import Artifact
from safeboard.artifacts.schemas import (
    ArtifactIdsOut,
    ArtifactIn,
    ArtifactListOut,
    ArtifactOut,
    PreviewOut,
)
from safeboard.artifacts.series import announce
from safeboard.artifacts.service import ArtifactService, Upload
from safeboard.artifacts.store import ArtifactStore, BlobReader
from safeboard.auth.dependencies import PUBLIC, client_address, requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest
from safeboard.events import EventBus
from safeboard.projects.access import visible_project_ids
from safeboard.provision import provided
from safeboard.streaming import ClosingStreamResponse
from safeboard.vocabulary import is_id_prefix

__all__ = ["CONTENT_PATH", "router"]

router = APIRouter()

# The upload route takes bodies up to the artifact's declared size, not the API's limit.
CONTENT_PATH = r"^/api/v1/artifacts/[^/]+/content$"
WRITE_BUFFER = 1 << 20
# Artifact responses are never a document that can run anything (S12).
_FILE_HEADERS = {
    "Content-Security-Policy": FILE_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _out(artifact: Artifact) -> ArtifactOut:
    return ArtifactOut(
        id=artifact.id, run_id=artifact.run_id, name=artifact.name, kind=artifact.kind,
        content_type=artifact.content_type, size=artifact.size, sha256=artifact.sha256,
        step=artifact.step, state=artifact.state,
        received=artifact.received, created_by=artifact.created_by,
        created_at=artifact.created_at, ready_at=artifact.ready_at,
    )  # fmt: skip


@router.post(
    "/api/v1/runs/{run_id}/artifacts", status_code=HTTP_201_CREATED, response_model=ArtifactOut
)
def declare(
    response: Response,
    run_id: str,
    body: ArtifactIn,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: ArtifactService = provided(ArtifactService),
) -> ArtifactOut:
    """Declare an artifact (name, size, SHA-256); its bytes follow with PUT .../content.
    413 at once if it is over the size limit or the project's quota. The same
    ``upload_id`` again returns the same artifact (200) with the bytes stored so far."""
    artifact, created = service.declare(principal, run_id, body)
    if not created:
        response.status_code = 200
    return _out(artifact)


@router.get("/api/v1/runs/{run_id}/artifacts", response_model=ArtifactListOut)
def list_artifacts(
    run_id: str,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(500, ge=1, le=1000),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> ArtifactListOut:
    """A run's artifacts in the order they were declared, a page at a time."""
    page = service.list_for_run(principal, run_id, cursor=cursor, limit=limit)
    return ArtifactListOut(
        items=[_out(a) for a in page.items], next_cursor=page.next_cursor, total=page.total
    )


@router.get("/api/v1/artifacts/{artifact_id}", response_model=ArtifactOut)
def get_artifact(
    artifact_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> ArtifactOut:
    """An artifact; while it uploads, ``received`` says where to resume."""
    return _out(service.get(principal, artifact_id))


_DIGITS = re.compile(r"[0-9]{1,19}")


def _offset(value: str | None) -> int:
    if value is None or not _DIGITS.fullmatch(value):
        raise InvalidRequest("Upload-Offset: the byte offset to write at (the `received` so far)")
    return int(value)


def _length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and _DIGITS.fullmatch(declared) else None


async def _receive(request: Request, upload: Upload) -> bool:
    """Stream the body to storage in 1 MiB writes, one write in flight while the next
    megabyte arrives (disk and network overlap); False if the client went away."""
    buffer = bytearray()
    pending: asyncio.Future[None] | None = None

    async def flush() -> None:
        nonlocal pending, buffer
        if pending is not None:
            previous, pending = pending, None
            await previous  # in order, and its error (413, disk full) surfaces here
        if buffer:
            data, buffer = bytes(buffer), bytearray()
            pending = asyncio.ensure_future(run_in_threadpool(upload.write, data))

    try:
        try:
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) > upload.remaining or len(buffer) >= WRITE_BUFFER:
                    await flush()  # over the declared size: upload.write raises 413
        except ClientDisconnect:
            await flush()
            return False
        await flush()
        return True
    finally:
        if pending is not None:
            with anyio.CancelScope(shield=True):
                await pending


@router.put("/api/v1/artifacts/{artifact_id}/content", response_model=ArtifactOut,
            openapi_extra=_UPLOAD_BODY)  # fmt: skip
async def upload(
    request: Request,
    artifact_id: str,
    upload_offset: str | None = Header(None, alias="Upload-Offset"),
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: ArtifactService = provided(ArtifactService),
    events: EventBus = provided(EventBus),
) -> ArtifactOut:
    """Append bytes at ``Upload-Offset`` (which must equal the bytes stored: 409 with the
    right offset otherwise). The request that brings the last byte checks the SHA-256 and
    answers with the artifact ``ready``; a mismatch discards the upload (422). An image of
    a series (a step) that turns ready is announced to the run's live streams."""
    offset = _offset(upload_offset)
    begun = await run_in_threadpool(
        service.begin_upload, principal, artifact_id, offset, _length(request)
    )
    complete = False
    try:
        complete = await _receive(request, begun)
    finally:
        # Also when the request is cancelled (shutdown): the file is closed and unlocked.
        with anyio.CancelScope(shield=True):
            artifact = await run_in_threadpool(service.end_upload, begun, complete=complete)
    if complete:
        await run_in_threadpool(announce, events, artifact)
    return _out(artifact)


def _etag(artifact: Artifact) -> str:
    return f'"{artifact.sha256}"'


def _send(artifact: Artifact, reader: BlobReader, span: tuple[int, int] | None) -> Response:
    inline = artifact.content_type in INLINE_TYPES
    headers = {
        **_FILE_HEADERS,
        "ETag": _etag(artifact),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(artifact.name, inline=inline),
    }
    start, end = span or (0, artifact.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{artifact.size}"
    media_type = artifact.content_type if inline else "application/octet-stream"
    return ClosingStreamResponse(reader, status_code=status, headers=headers, media_type=media_type)


def _span(request: Request, artifact: Artifact) -> tuple[int, int] | None:
    """The byte range to send, honouring If-Range; raises Unsatisfiable for 416."""
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != _etag(artifact):
        return None  # the client's partial copy is of another version: send it whole
    return parse_range(request.headers.get("range"), artifact.size)


def _holds_this_version(request: Request, artifact: Artifact) -> bool:
    """If-None-Match names this version (a list, weak or strong, or ``*``)."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or _etag(artifact) in tags


def _download(
    request: Request,
    store: ArtifactStore,
    artifact: Artifact,
    record: Callable[[str | None], None],
) -> Response:
    """304 when the client holds this version, 416 for a range outside the file (neither
    sends a byte, so neither is a download); otherwise the file is opened, the download
    recorded, and the bytes streamed."""
    if _holds_this_version(request, artifact):
        return Response(status_code=304, headers={**_FILE_HEADERS, "ETag": _etag(artifact)})
    try:
        span = _span(request, artifact)
    except Unsatisfiable:
        return Response(
            status_code=416, headers={**_FILE_HEADERS, "Content-Range": f"bytes */{artifact.size}"}
        )
    start, end = span or (0, artifact.size)
    reader = store.read(artifact.id, start, end)
    try:
        record(f"{start}-{end - 1}" if span else None)
    except BaseException:
        reader.close()
        raise
    return _send(artifact, reader, span)


@router.get("/api/v1/artifacts/{artifact_id}/content", response_class=StreamingResponse)
def download(
    request: Request,
    artifact_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> Response:
    """The artifact's bytes: streamed, with ``Range`` (one range) and ``ETag`` (its
    SHA-256). An attachment unless it is a proven PNG, JPEG, GIF or WebP image."""
    artifact = service.readable(principal, artifact_id)
    address = client_address(request)
    actor = principal.actor
    return _download(
        request,
        service.store,
        artifact,
        lambda part: service.record_download(artifact, actor, address, part),
    )


@router.delete("/api/v1/artifacts/{artifact_id}", status_code=HTTP_204_NO_CONTENT)
def delete(
    request: Request,
    artifact_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: ArtifactService = provided(ArtifactService),
) -> None:
    service.delete(principal, artifact_id, client_address(request))


@router.post("/api/v1/artifacts/{artifact_id}/preview", response_model=PreviewOut)
def preview(
    artifact_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> PreviewOut:
    """A link the browser can open without other credentials: this artifact only, for
    this user only, for at most five minutes."""
    token, expires = service.preview_link(principal, artifact_id)
    return PreviewOut(url=f"/files/preview/{token}", expires_at=expires)


@router.get("/files/preview/{token}", response_class=StreamingResponse, dependencies=[PUBLIC])
def open_preview(
    request: Request, token: str, service: ArtifactService = provided(ArtifactService)
) -> Response:
    """Public in the sense that the signed link is the credential (checked here: MAC,
    expiry, the user still active and still allowed to read the artifact, the key that
    asked for the link still valid)."""
    artifact, actor = service.by_link(token)
    address = client_address(request)
    return _download(
        request,
        service.store,
        artifact,
        lambda part: service.record_download(artifact, actor, address, part),
    )


@router.get("/api/v1/artifact-ids", response_model=ArtifactIdsOut)
def artifact_ids(
    prefix: str = Query(min_length=1, max_length=32, description="Lowercase hex."),
    limit: int = Query(10, ge=1, le=100),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    engine: sa.Engine = provided(sa.Engine),
) -> ArtifactIdsOut:
    """Ids of the artifacts you can see that start with ``prefix`` (at most ``limit``,
    sorted): how the CLI resolves an id as printed. Several: the prefix is ambiguous."""
    if not is_id_prefix(prefix):
        raise InvalidRequest("prefix: 1 to 32 lowercase hex digits (an artifact id as printed)")
    with engine.connect() as conn:
        visible = visible_project_ids(conn, principal)
        return ArtifactIdsOut(
            ids=artifacts_repository.ids_with_prefix(conn, prefix, visible, limit)
        )
