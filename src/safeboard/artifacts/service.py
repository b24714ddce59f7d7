"""Artifact use cases: declare, upload (resumable), download, list, delete, preview links
(S9, S12, S16).

Upload protocol: ``declare`` makes the row (state ``uploading``, checked against the size
limit and the project's quota before any byte is sent); each upload request appends at
the offset the store holds; the request that brings the last byte checks the SHA-256 and
turns the artifact ``ready``. A dropped connection keeps what arrived: the client asks
for ``received`` and continues from there.

Expiry: an upload left unfinished with no activity (declared, an upload request begun or
ended) for ``artifacts.incomplete_upload_hours`` is deleted with its partial file, so that
abandoned uploads do not hold a project's quota for ever. A declaration that would not fit
the quota expires the project's oldest idle uploads until it fits; ``expire_idle_uploads``
sweeps every project (periodically: ``artifacts/expiry.py``). Each deletion is conditional
(still unfinished, still idle), so replicas sweeping at once expire an upload once; a file
an upload request is writing (its lock held) is skipped and kept. An expired upload
answers 410 Gone (its tombstone says so: ``artifacts/tombstones.py``), a deleted one 404.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from safeboard.accounts import repository as accounts
from safeboard.artifacts import repository as artifacts
from safeboard.artifacts.links import SESSION, LinkClaims, check_link, sign_link
from safeboard.artifacts.quota import ensure_room
from safeboard.artifacts.ranges import INLINE_TYPES, sniff_image
from safeboard.artifacts.repository import Artifact
from safeboard.artifacts.schemas import ArtifactIn
from safeboard.artifacts.store import ArtifactStore, BlobWriter
from safeboard.artifacts.tombstones import missing
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.permissions import CredentialKind, Permission, Scope
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.cursors import decode_position, encode_position
from safeboard.errors import (
    ChecksumMismatch,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from safeboard.ids import new_id
from safeboard.projects import repository as projects
from safeboard.projects.access import refuse_run_bound
from safeboard.runs.access import run_for
from safeboard.settings import ArtifactSettings
from safeboard.storage import writer
from safeboard.vocabulary import ArtifactState

__all__ = ["ArtifactPage", "ArtifactService", "Upload"]

log = logging.getLogger("safeboard.artifacts")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SNIFF_BYTES = 16
_KEPT_DIGESTS = 1024  # uploads in progress whose running SHA-256 is kept (~0.4 KB each)
EXPIRY_ACTOR = "system:expiry"  # who expires idle uploads, in the audit log
_EXPIRY_BATCH = 500
_READY = ArtifactState.READY.value


@dataclass
class Upload:
    """One upload request in progress: where it writes, and the running checksum when it
    started at byte 0 (then the finished file need not be read again)."""

    artifact: Artifact
    principal: Principal
    offset: int
    writer: BlobWriter
    written: int = 0
    digest: hashlib._Hash | None = field(default=None)

    @property
    def remaining(self) -> int:
        return self.artifact.size - self.offset - self.written

    def write(self, data: bytes) -> None:
        if len(data) > self.remaining:
            raise PayloadTooLarge(
                f"the upload goes past the declared size of {self.artifact.size} bytes"
            )
        self.writer.write(data)
        if self.digest is not None:
            self.digest.update(data)
        self.written += len(data)


@dataclass(frozen=True)
class ArtifactPage:
    items: list[Artifact]
    next_cursor: str | None
    total: int  # the run's artifacts, all pages


class ArtifactService:
    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        settings: ArtifactSettings,
        signing_key: bytes,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.store = store
        self.settings = settings
        self._key = signing_key
        self.clock = clock
        # The running SHA-256 of uploads sent in several requests, by artifact: the next
        # request at the same offset continues it instead of the end reading the whole
        # file again. A cache only: another replica or a restart reads the file instead.
        self._digests: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()
        self._digests_lock = threading.Lock()

    # --- finding -------------------------------------------------------------------------

    @staticmethod
    def _checked(
        conn: Connection, principal: Principal, artifact_id: str, permission: Permission
    ) -> Artifact:
        """The artifact, once the principal may act on its run (else 404 for the artifact:
        its existence does not leak)."""
        artifact = artifacts.get(conn, artifact_id)
        if artifact is None:
            raise missing(conn, principal, artifact_id, permission)
        try:
            run_for(conn, principal, artifact.run_id, permission)
        except NotFound:
            raise NotFound("no such artifact") from None
        return artifact

    def get(self, principal: Principal, artifact_id: str) -> Artifact:
        with self.engine.connect() as conn:
            found = self._checked(conn, principal, artifact_id, Permission.PROJECTS_READ)
        return self._with_progress(found)

    def list_for_run(
        self, principal: Principal, run_id: str, *, cursor: str | None, limit: int
    ) -> ArtifactPage:
        """A page of a run's artifacts, oldest first; ``next_cursor`` continues it."""
        after = decode_position(cursor) if cursor else None
        with self.engine.connect() as conn:
            run_for(conn, principal, run_id, Permission.PROJECTS_READ)
            found = artifacts.list_for_run(conn, run_id, after=after, limit=limit + 1)
            total = artifacts.count_for_run(conn, run_id)
        page = [self._with_progress(a) for a in found[:limit]]
        last = page[-1] if len(found) > limit else None
        return ArtifactPage(
            page, encode_position(last.created_at, last.id) if last else None, total
        )

    def _with_progress(self, artifact: Artifact) -> Artifact:
        """An unfinished artifact reports what the store holds: an upload cut off midway
        may have stored more than its row last said."""
        if artifact.state == _READY:
            return artifact
        held = min(self.store.size(artifact.id), artifact.size)
        return artifact if held == artifact.received else replace(artifact, received=held)

    # --- uploading -----------------------------------------------------------------------

    def declare(self, principal: Principal, run_id: str, spec: ArtifactIn) -> tuple[Artifact, bool]:
        """The artifact to upload into, and whether it is new (False: the same upload id
        was declared before, and the client resumes)."""
        limit = self.settings.max_file_bytes
        if spec.size > limit:
            raise PayloadTooLarge(f"{spec.size} bytes is over the {limit}-byte artifact limit")
        if spec.size == 0 and spec.sha256 != EMPTY_SHA256:
            raise InvalidRequest("sha256: an empty file has the SHA-256 of no bytes")
        quota = self.settings.project_quota_bytes
        if quota:  # uploads abandoned in the project give back the quota this one needs
            with self.engine.connect() as conn:
                _, project = run_for(conn, principal, run_id, Permission.PROJECTS_WRITE)
                resuming = spec.upload_id is not None and (
                    artifacts.get_by_upload(conn, run_id, spec.upload_id) is not None
                )
            if not resuming:  # (a resumed upload's bytes are counted already)
                self._expire_idle(project.id, room=(quota, spec.size))
        now = self.clock()
        with self.tx.begin() as conn:
            run, project = run_for(conn, principal, run_id, Permission.PROJECTS_WRITE)
            # One declaration at a time per project on PostgreSQL (SQLite: one writer), taken
            # before the upload-id lookup so that concurrent retries find each other's row.
            projects.lock(conn, project.id)
            if spec.upload_id is not None:
                earlier = artifacts.get_by_upload(conn, run_id, spec.upload_id)
                if earlier is not None:
                    same = (earlier.name, earlier.size, earlier.sha256) == (
                        spec.name, spec.size, spec.sha256,
                    )  # fmt: skip
                    if not same:
                        raise Conflict("this upload id was declared for another file")
                    if earlier.state == _READY or artifacts.touch(conn, earlier.id, now):
                        return self._with_progress(earlier), False  # done, or resumed
                    now_there = artifacts.get(conn, earlier.id)
                    if now_there is not None:  # it turned ready meanwhile
                        return self._with_progress(now_there), False
                    # else it expired a moment ago (another replica): a new one, from 0
            ensure_room(conn, self.settings, project, principal.user_id, spec.size)
            artifact_id = new_id()
            artifacts.create(
                conn, id=artifact_id, run_id=run.id, project_id=project.id, name=spec.name,
                kind=spec.kind, content_type=spec.content_type, size=spec.size,
                sha256=spec.sha256, step=spec.step, state=ArtifactState.UPLOADING.value, received=0,
                upload_id=spec.upload_id, created_by=principal.user_id, created_at=now,
                updated_at=now,
            )  # fmt: skip
            if spec.size == 0:  # complete already; nothing to store, nothing to prove
                empty_type = _unproven(spec.content_type)
                artifacts.mark_ready(conn, artifact_id, empty_type, now)
            created = artifacts.get(conn, artifact_id)
        assert created is not None  # noqa: S101
        return created, True

    def begin_upload(
        self, principal: Principal, artifact_id: str, offset: int, length: int | None
    ) -> Upload:
        """Check an upload request before reading its body: the artifact is unfinished,
        ``offset`` is what is stored, and ``length`` (Content-Length) fits."""
        with self.engine.connect() as conn:
            artifact = self._checked(conn, principal, artifact_id, Permission.PROJECTS_WRITE)
        if artifact.state == _READY:
            raise Conflict("this artifact is complete; declare a new one to replace it")
        if length is not None and offset + length > artifact.size:
            raise PayloadTooLarge(
                f"{offset} + {length} bytes goes past the declared size of {artifact.size}"
            )
        blob = self.store.append(artifact.id, offset)  # Conflict: wrong offset, or busy
        # Active from now (under the file's lock): no expiry takes it while this request
        # runs, even after it releases the lock at its end.
        with self.tx.begin() as conn:
            active = artifacts.touch(conn, artifact.id, self.clock())
            now_there = None if active else artifacts.get(conn, artifact.id)
        if not active:
            blob.close()
            if now_there is not None:  # another request finished it meanwhile
                raise Conflict("this artifact is complete; declare a new one to replace it")
            self.store.delete(artifact.id)  # deleted or expired meanwhile: leave no file
            with self.engine.connect() as conn:
                raise missing(conn, principal, artifact.id, Permission.PROJECTS_WRITE)
        digest = hashlib.sha256() if offset == 0 else self._running_digest(artifact.id, offset)
        return Upload(artifact, principal, offset, blob, digest=digest)

    def end_upload(self, upload: Upload, *, complete: bool) -> Artifact:
        """Make what arrived durable; when the body was whole and brought the last byte,
        check the checksum and turn the artifact ready. A mismatch discards the bytes.
        The writer's lock is held until the file is proven (a delete waits: 409)."""
        artifact = upload.artifact
        received = upload.offset + upload.written
        if not complete or received < artifact.size:
            upload.writer.close()
            if upload.digest is not None:
                self._keep_digest(artifact.id, received, upload.digest)
            with self.tx.begin() as conn:
                still_there = artifacts.set_received(conn, artifact.id, received, self.clock())
            if not still_there:
                self._gone_while_uploading(upload)
            return replace(artifact, received=received)
        try:
            digest = upload.digest.hexdigest() if upload.digest else self.store.sha256(artifact.id)
            content_type = self._served_type(artifact) if digest == artifact.sha256 else ""
        finally:
            upload.writer.close()
        if digest != artifact.sha256:
            self.store.delete(artifact.id)
            with self.tx.begin() as conn:
                artifacts.set_received(conn, artifact.id, 0, self.clock())
            raise ChecksumMismatch(
                f"sha256: the bytes received hash to {digest}, not the declared "
                f"{artifact.sha256}; the upload was discarded, send it again from 0"
            )
        with self.tx.begin() as conn:
            ready = artifacts.mark_ready(conn, artifact.id, content_type, self.clock())
            done = artifacts.get(conn, artifact.id)
        if not ready or done is None:
            self._gone_while_uploading(upload)
        assert done is not None  # noqa: S101  (_gone_while_uploading raised)
        return done

    def _gone_while_uploading(self, upload: Upload) -> None:
        """The row was deleted (or expired) between this request's check and its end: the
        file it wrote, possibly a new one, belongs to nothing. 404 (410 if it expired), and
        no file left."""
        artifact_id = upload.artifact.id
        try:
            self.store.delete(artifact_id)
        except Conflict:  # another request writes it now; it finds the row gone too
            log.info("artifact %s: deleted while uploading; its file is still busy", artifact_id)
        with self.engine.connect() as conn:
            raise missing(conn, upload.principal, artifact_id, Permission.PROJECTS_WRITE)

    def _running_digest(self, artifact_id: str, offset: int) -> hashlib._Hash | None:
        with self._digests_lock:
            kept = self._digests.pop(artifact_id, None)
        return kept[1] if kept is not None and kept[0] == offset else None

    def _keep_digest(self, artifact_id: str, offset: int, digest: hashlib._Hash) -> None:
        with self._digests_lock:
            self._digests[artifact_id] = (offset, digest)
            while len(self._digests) > _KEPT_DIGESTS:
                self._digests.popitem(last=False)

    def _served_type(self, artifact: Artifact) -> str:
        """An image type only when the bytes prove it; anything else keeps its declared
        type as metadata (downloads are served as attachments either way)."""
        if artifact.content_type not in INLINE_TYPES and artifact.kind != "image":
            return artifact.content_type
        reader = self.store.read(artifact.id, 0, min(_SNIFF_BYTES, artifact.size))
        try:
            head = b"".join(reader)
        finally:
            reader.close()
        return sniff_image(head) or _unproven(artifact.content_type)

    # --- downloading, deleting -----------------------------------------------------------

    def _audit_download(
        self, conn: Connection, artifact: Artifact, actor: str, address: str, part: str | None
    ) -> None:
        """One entry per actor, artifact and address per ``download_audit_seconds``: it
        stands for the repeats that follow it within that time (a player's Range requests)."""
        window = self.settings.download_audit_seconds
        detail: dict[str, object] = {"run": artifact.run_id, "name": artifact.name[:200]}
        if part:
            detail["range"] = part
        if window:
            detail["repeats_within_s"] = window
        audit.append_unless_recent(
            conn, within=timedelta(seconds=window), action=AuditAction.ARTIFACT_DOWNLOADED,
            actor=actor, target=f"artifact:{artifact.id}", address=address, detail=detail,
            at=self.clock(),
        )  # fmt: skip

    def readable(self, principal: Principal, artifact_id: str) -> Artifact:
        """A ready artifact the principal may read (409 while it uploads)."""
        artifact = self.get(principal, artifact_id)
        _ready(artifact)
        return artifact

    def record_download(
        self, artifact: Artifact, actor: str, address: str, part: str | None = None
    ) -> None:
        """The download goes into the audit log (S16), once the bytes are about to go."""
        with self.tx.begin() as conn:
            self._audit_download(conn, artifact, actor, address, part)

    def delete(self, principal: Principal, artifact_id: str, address: str) -> None:
        """Row, audit entry and file go together; 409 while an upload request is writing
        it (its bytes would otherwise land in a deleted file, outside the quota)."""
        with self.tx.begin() as conn:
            artifact = self._checked(conn, principal, artifact_id, Permission.PROJECTS_WRITE)
            artifacts.delete(conn, artifact.id)
            audit.append(
                conn, action=AuditAction.ARTIFACT_DELETED, actor=principal.actor,
                target=f"artifact:{artifact.id}", address=address,
                detail={"run": artifact.run_id, "name": artifact.name[:200],
                        "bytes": artifact.size},
            )  # fmt: skip
            self.store.delete(artifact.id)  # Conflict rolls the transaction back

    # --- expiry of abandoned uploads -----------------------------------------------------

    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int:
        """Expire every project's idle unfinished uploads (the periodic sweep); how many
        went. ``stop`` ends it early (the server shuts down)."""
        return self._expire_idle(None, stop)

    def _expire_idle(
        self,
        project_id: int | None,
        stop: threading.Event | None = None,
        room: tuple[int, int] | None = None,
    ) -> int:
        """Expire idle unfinished uploads, of one project or of all, oldest first: one
        transaction each, so that neither a sweep nor a declaration holds the database (or,
        on PostgreSQL, the audit log's lock together with other rows) for long. With
        ``room`` = (quota, bytes wanted) it stops as soon as the project has that room (a
        declaration expires only what it needs; the sweep does the rest)."""
        cutoff = self.clock() - timedelta(hours=self.settings.incomplete_upload_hours)
        quota, wanted = room or (0, 0)
        over = 0  # bytes to free before the wanted ones fit
        if room is not None and project_id is not None:
            with self.engine.connect() as conn:
                over = artifacts.project_bytes(conn, project_id) + wanted - quota
                if over <= 0 or artifacts.stale_bytes(conn, cutoff, project_id) < over:
                    return 0  # room already, or none to be had: the quota check says so
        expired = 0
        after: tuple[datetime, str] | None = None
        while True:
            with self.engine.connect() as conn:
                batch = artifacts.stale_uploads(conn, cutoff, project_id, _EXPIRY_BATCH, after)
            for artifact in batch:
                if stop is not None and stop.is_set():
                    return expired
                if self._expire(artifact, cutoff):
                    expired += 1
                    over -= artifact.size
                    if room is not None and over <= 0:
                        return expired
            if len(batch) < _EXPIRY_BATCH:  # none left (busy ones are passed over)
                return expired
            after = (batch[-1].updated_at, batch[-1].id)

    def _expire(self, artifact: Artifact, cutoff: datetime) -> bool:
        """Row, audit entry and file go together. False, and all kept, when the upload was
        resumed or expired elsewhere meanwhile, or a request is writing its file."""
        try:
            with self.tx.begin() as conn:
                if not artifacts.delete_stale(conn, artifact.id, cutoff):
                    return False
                artifacts.bury(conn, artifact.id, artifact.run_id, self.clock())
                project = projects.get(conn, artifact.project_id)
                audit.append(
                    conn, action=AuditAction.ARTIFACT_EXPIRED, actor=EXPIRY_ACTOR,
                    target=f"artifact:{artifact.id}",
                    detail={"run": artifact.run_id, "project": project.name if project else None,
                            "name": artifact.name[:200], "bytes": artifact.size,
                            "received": min(self.store.size(artifact.id), artifact.size),
                            "idle_since": artifact.updated_at.isoformat()},
                )  # fmt: skip
                self.store.delete(artifact.id)  # Conflict rolls the transaction back
        except Conflict:
            log.info("artifact %s: idle, but a request is writing it: kept", artifact.id)
            return False
        log.info(
            "artifact %s (run %s): unfinished upload expired, idle for %d hours or more",
            artifact.id, artifact.run_id, self.settings.incomplete_upload_hours,
        )  # fmt: skip
        return True

    # --- preview links -------------------------------------------------------------------

    def preview_link(self, principal: Principal, artifact_id: str) -> tuple[str, datetime]:
        """A ``/files/preview/<token>`` token: this artifact, user (and asking key), minutes."""
        refuse_run_bound(principal)  # a link acts for a person: never minted by a task
        artifact = self.readable(principal, artifact_id)
        expires = self.clock() + timedelta(seconds=self.settings.preview_seconds)
        claims = LinkClaims(
            artifact.id, principal.user_id, int(expires.timestamp()), principal.key_id or SESSION
        )
        return sign_link(self._key, claims), datetime.fromtimestamp(claims.expires, expires.tzinfo)

    def by_link(self, token: str) -> tuple[Artifact, str]:
        """The artifact a genuine, live link names, and who it acts for (the audit actor),
        if its user is active, the key that asked for it is still valid, and they may still
        read it. Every failure looks the same (404)."""
        gone = NotFound("this link is invalid or has expired")
        now = self.clock()
        claims = check_link(self._key, token, now.timestamp())
        if claims is None:
            raise gone
        with self.engine.connect() as conn:
            by_key = claims.credential != SESSION
            user = accounts.get(conn, claims.user_id)
            key = accounts.get_key(conn, claims.credential) if by_key else None
            if user is None or not user.is_active:
                raise gone
            if by_key and (
                key is None
                or key.user_id != user.id
                or key.revoked_at is not None
                or (key.expires_at is not None and now >= key.expires_at)
            ):
                raise gone
            reader = Principal(
                user_id=user.id, username=user.username, role=user.role,
                credential=CredentialKind.SESSION, scope=Scope.READ,
                project_id=key.project_id if key else None,
            )  # fmt: skip
            try:
                artifact = self._checked(conn, reader, claims.artifact_id, Permission.PROJECTS_READ)
            except NotFound:
                raise gone from None
        _ready(artifact)
        return artifact, f"user:{user.username} (preview link)"


def _unproven(content_type: str) -> str:
    """A raster type the bytes did not prove is no longer claimed."""
    return "application/octet-stream" if content_type in INLINE_TYPES else content_type


def _ready(artifact: Artifact) -> None:
    if artifact.state != _READY:
        raise Conflict(
            f"this artifact is still uploading ({artifact.received} of {artifact.size} bytes)"
        )
