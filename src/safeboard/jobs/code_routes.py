"""HTTP for a task's code: users upload an archive to a project by its SHA-256 (and ask
whether the project holds it, so the same code is sent once); the agent holding a live
attempt of a task downloads that task's archive (``/api/v1/agent/...``, AGENT_CALL,
fenced by the attempt as heartbeats are)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.status import HTTP_201_CREATED

from safeboard.auth.dependencies import requires, requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import Forbidden
from safeboard.jobs.agent_routes import AttemptNumber
from safeboard.jobs.code import CodeArchives, CodeStatus, CodeUpload
from safeboard.jobs.schemas import TaskId
from safeboard.jobs.service import TaskService
from safeboard.provision import provided
from safeboard.schemas import Model
from safeboard.streaming import ClosingStreamResponse

__all__ = ["CODE_PATH", "router"]

router = APIRouter()
# The upload takes bodies up to jobs.max_code_bytes, not the API's body limit.
CODE_PATH = r"^/api/v1/projects/[^/]+/code/[^/]+$"
WRITE_BUFFER = 1 << 20
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class CodeOut(Model):
    sha256: str
    uploaded: bool = Field(description="The project holds this archive: name it at submit.")
    size: int | None = Field(description="Bytes of the archive, when uploaded.")
    max_bytes: int = Field(description="The largest archive the server takes.")


def _out(status: CodeStatus) -> CodeOut:
    return CodeOut(sha256=status.sha256, uploaded=status.uploaded, size=status.size,
                   max_bytes=status.max_bytes)  # fmt: skip


@router.get("/api/v1/projects/{project}/code/{sha256}", response_model=CodeOut)
def code_status(
    project: str,
    sha256: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    archives: CodeArchives = provided(CodeArchives),
) -> CodeOut:
    """Whether the project holds this archive (then a submit may name it at once), and
    the server's size limit. Who may submit to the project may ask."""
    return _out(archives.status(principal, project, sha256))


def _length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() and len(declared) < 20 else None


async def _receive(request: Request, upload: CodeUpload) -> bool:
    """The body into the store in 1 MiB writes; False when the client went away."""
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER or upload.size + len(buffer) > upload.limit:
                data, buffer = bytes(buffer), bytearray()
                await run_in_threadpool(upload.write, data)
    except ClientDisconnect:
        return False
    if buffer:
        await run_in_threadpool(upload.write, bytes(buffer))
    return True


@router.put("/api/v1/projects/{project}/code/{sha256}", response_model=CodeOut,
            status_code=HTTP_201_CREATED, openapi_extra=_UPLOAD_BODY,
            responses={200: {"description": "The project held it: nothing stored."}})  # fmt: skip
async def upload_code(
    *,
    request: Request,
    response: Response,
    project: str,
    sha256: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    archives: CodeArchives = provided(CodeArchives),
) -> CodeOut:
    """Store the body (a tar.gz) as the code archive ``sha256`` of the project: 422 if it
    hashes to another digest, 413 over ``jobs.max_code_bytes``. A digest the project
    holds already answers 200 at once, without reading the body."""
    held = await run_in_threadpool(archives.status, principal, project, sha256)
    if held.uploaded:
        response.status_code = 200
        return _out(held)
    begun = await run_in_threadpool(
        archives.begin_upload, principal, project, sha256, _length(request)
    )
    try:
        complete = await _receive(request, begun)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(archives.abandon, begun)
        raise
    with anyio.CancelScope(shield=True):
        stored = await run_in_threadpool(archives.end_upload, begun, complete=complete)
    return _out(stored)


@router.get("/api/v1/agent/tasks/{task_id}/{attempt}/code", response_class=Response,
            responses={200: {"content": {"application/gzip": {}}}})  # fmt: skip
def attempt_code(
    task_id: TaskId,
    attempt: AttemptNumber,
    principal: Principal = requires(Permission.AGENT_CALL),
    archives: CodeArchives = provided(CodeArchives),
) -> Response:
    """The code archive of a live attempt leased to this agent (its SHA-256 in the ETag
    and ``X-Code-SHA256``: the agent checks it). 409 stale, 404 another agent's."""
    if principal.agent_id is None:  # AGENT_CALL is carried by agent credentials only
        raise Forbidden("only an agent may call this route")
    found, chunks = archives.for_attempt(task_id, attempt, principal.agent_id)
    headers = {"Content-Length": str(found.size), "ETag": f'"{found.sha256}"',
               "X-Code-SHA256": found.sha256, "Cache-Control": "no-store"}  # fmt: skip
    return ClosingStreamResponse(chunks, headers=headers, media_type="application/gzip")


@router.get("/api/v1/tasks/{task_id}/code", response_class=Response,
            responses={200: {"content": {"application/gzip": {}}}})  # fmt: skip
def task_code(
    task_id: TaskId,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TaskService = provided(TaskService),
    archives: CodeArchives = provided(CodeArchives),
) -> Response:
    """The task's code archive, as an attachment (``task-<id>-<sha256 prefix>.tar.gz``),
    for whoever may read the task (its page's "Download code"); 404 for a task without
    code, or one you may not read."""
    task = service.get(principal, task_id).task
    found, chunks = archives.for_task(task)
    name = f"task-{task.id}-{found.sha256[:12]}.tar.gz"
    headers = {"Content-Length": str(found.size), "ETag": f'"{found.sha256}"',
               "X-Code-SHA256": found.sha256, "Cache-Control": "no-store",
               "Content-Disposition": f'attachment; filename="{name}"'}  # fmt: skip
    return ClosingStreamResponse(chunks, headers=headers, media_type="application/gzip")
