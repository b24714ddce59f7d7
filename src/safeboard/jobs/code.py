"""A task's code: tar.gz archives that clients upload to a project, content-addressed
(``PUT /api/v1/projects/{p}/code/{sha256}``), stored once per project and digest, and
handed to the agent that holds a live attempt of a task that names one.

The bytes live in the server's blob store (the artifacts' ``LocalStore``, passed in by
``safeboard.services``: this domain does not import artifacts), under a server-made key;
``task_code`` maps (project, SHA-256) to it. An upload streams into a fresh key while its
SHA-256 is computed; it is kept only if the digest is the one in the path and the size is
within ``jobs.max_code_bytes``; a second upload of a digest the project holds (two at
once, say) keeps the first and deletes its own bytes. docs/agents.md, "Code".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, Engine

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import ChecksumMismatch, Conflict, InvalidRequest, NotFound, PayloadTooLarge
from safeboard.ids import new_id
from safeboard.jobs import code_repository as archives
from safeboard.jobs import repository as tasks
from safeboard.jobs.code_repository import CodeArchive
from safeboard.jobs.repository import LIVE_STATES, Task
from safeboard.jobs.spec import SHA256
from safeboard.projects.access import project_by_name, refuse_run_bound
from safeboard.settings import JobSettings
from safeboard.storage import writer

__all__ = [
    "BlobStore",
    "CodeArchives",
    "CodeStatus",
    "CodeUpload",
    "code_problem",
    "missing_code",
]

_LIVE = {state.value for state in LIVE_STATES}


class BlobChunks(Protocol):
    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class BlobSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """What this domain needs of the server's blob store (``artifacts.store.LocalStore``
    is one): keys are server-made ids."""

    def append(self, key: str, offset: int) -> BlobSink: ...

    def read(self, key: str, start: int, end: int) -> BlobChunks: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class CodeStatus:
    """Whether a project holds an archive, and the largest one it would take."""

    sha256: str
    uploaded: bool
    size: int | None
    max_bytes: int


def code_problem(sha256: str) -> str | None:
    if not SHA256.fullmatch(sha256):
        return "code_sha256: the archive's SHA-256, 64 lowercase hex digits"
    return None


def missing_code(conn: Connection, project_id: int, project: str, sha256: str) -> str | None:
    """Why a task of ``project`` cannot name ``sha256`` as its code, or None."""
    if archives.get_code(conn, project_id, sha256) is None:
        return (f"code {sha256[:12]}... was not uploaded to project {project}: "
                f"PUT it to /api/v1/projects/{project}/code/{sha256} first")  # fmt: skip
    return None


@dataclass
class CodeUpload:
    """One upload request in progress: its bytes go to ``key`` as they arrive."""

    project_id: int
    sha256: str
    key: str
    uploaded_by: int | None
    limit: int
    sink: BlobSink
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(_too_large(self.limit))
        self.digest.update(data)
        self.sink.write(data)


def _too_large(limit: int) -> str:
    return (f"the code archive is over the server's limit of {limit} bytes "
            "(jobs.max_code_bytes): exclude large files with .gitignore or "
            ".safeboardignore")  # fmt: skip


class CodeArchives:
    def __init__(
        self,
        engine: Engine,
        store: BlobStore,
        settings: JobSettings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.store = store
        self.max_bytes = settings.max_code_bytes
        self.clock = clock

    def _project_id(self, conn: Connection, principal: Principal, project: str) -> int:
        refuse_run_bound(principal)  # a task's token submits nothing
        return project_by_name(conn, principal, project, Permission.PROJECTS_WRITE).id

    def status(self, principal: Principal, project: str, sha256: str) -> CodeStatus:
        """Whether ``project`` holds the archive ``sha256`` (then a submit may name it
        without uploading it again)."""
        _check_digest(sha256)
        with self.engine.connect() as conn:
            found = archives.get_code(conn, self._project_id(conn, principal, project), sha256)
        size = None if found is None else found.size
        return CodeStatus(sha256, found is not None, size, self.max_bytes)

    def begin_upload(
        self, principal: Principal, project: str, sha256: str, length: int | None
    ) -> CodeUpload:
        """Check access and the declared size before a byte is stored."""
        _check_digest(sha256)
        with self.engine.connect() as conn:
            project_id = self._project_id(conn, principal, project)
        if length is not None and length > self.max_bytes:
            raise PayloadTooLarge(_too_large(self.max_bytes))
        key = new_id()
        return CodeUpload(project_id=project_id, sha256=sha256, key=key,
                          uploaded_by=principal.user_id or None, limit=self.max_bytes,
                          sink=self.store.append(key, 0))  # fmt: skip

    def end_upload(self, upload: CodeUpload, *, complete: bool) -> CodeStatus:
        """Keep the bytes if they are whole and hash to the digest named; else delete
        them (ChecksumMismatch for another digest)."""
        upload.sink.close()
        kept = False
        try:
            if not complete:
                raise InvalidRequest("the upload ended before its last byte; send it again")
            if upload.digest.hexdigest() != upload.sha256:
                raise ChecksumMismatch(
                    f"the archive's SHA-256 is {upload.digest.hexdigest()}, not "
                    f"{upload.sha256} as its path says; nothing was kept"
                )
            archive = CodeArchive(
                project_id=upload.project_id, sha256=upload.sha256, blob_key=upload.key,
                size=upload.size, uploaded_by=upload.uploaded_by, created_at=self.clock(),
            )  # fmt: skip
            with self.tx.begin() as conn:
                kept = archives.insert_code(conn, archive)
        finally:
            if not kept:
                self.store.delete(upload.key)
        return CodeStatus(upload.sha256, True, upload.size, self.max_bytes)

    def abandon(self, upload: CodeUpload) -> None:
        """An upload refused while its body arrived (over the limit): nothing is kept."""
        upload.sink.close()
        self.store.delete(upload.key)

    def for_attempt(
        self, task_id: int, attempt: int, agent_id: str
    ) -> tuple[CodeArchive, BlobChunks]:
        """The code of a task's live attempt leased to ``agent_id``, with its bytes (opened
        now). Fenced like heartbeats: another agent's attempt, or none: NotFound; a stale
        or ended one: Conflict."""
        with self.engine.connect() as conn:
            task = tasks.get_task(conn, task_id)
            current = None if task is None else tasks.get_attempt(conn, task_id, attempt)
            if task is None or current is None or current.agent_id != agent_id:
                raise NotFound(f"no attempt {attempt} of task {task_id} leased to this agent")
            if task.attempt != attempt or current.state not in _LIVE:
                raise Conflict(f"attempt {attempt} of task {task_id} is stale or has ended")
            if task.code_sha256 is None:
                raise NotFound(f"task {task_id} has no code: it runs a command of the agent")
            found = archives.get_code(conn, task.project_id, task.code_sha256)
        if found is None:  # the project was deleted meanwhile: the task goes with it
            raise NotFound(f"the code of task {task_id} is gone")
        try:
            return found, self.store.read(found.blob_key, 0, found.size)
        except FileNotFoundError:  # removed from the data directory by hand
            raise NotFound(f"the code of task {task_id} is missing from storage") from None

    def for_task(self, task: Task) -> tuple[CodeArchive, BlobChunks]:
        """The code of ``task`` for a person who may read it (the caller checked that):
        the archive its attempts unpack, whatever their state."""
        if task.code_sha256 is None:
            raise NotFound(f"task {task.id} has no code: it runs a command of the agent")
        with self.engine.connect() as conn:
            found = archives.get_code(conn, task.project_id, task.code_sha256)
        if found is None:
            raise NotFound(f"the code of task {task.id} is gone")
        try:
            return found, self.store.read(found.blob_key, 0, found.size)
        except FileNotFoundError:
            raise NotFound(f"the code of task {task.id} is missing from storage") from None


def _check_digest(sha256: str) -> None:
    problem = code_problem(sha256)
    if problem is not None:
        raise InvalidRequest(problem)
