"""Artifact uploads, shared by the SDK and the CLI (downloads: ``client/downloads.py``):
streamed from disk (never a whole file in memory), resumable, checked by SHA-256.

Upload: hash the file, declare it with an ``upload_id`` derived from the run, the file's
absolute path, name, size, modification time and SHA-256 (so running the same upload
again resumes it rather than starting over), then PUT the bytes the server does not hold
yet in chunks of ``chunk_size``, each at the offset the server holds
(``Upload-Offset``). A dropped connection, a timeout or a 5xx reads the server's
``received`` again and carries on from there, with backoff, a bounded number of times in
a row.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from safeboard.client import paths
from safeboard.client.http import ApiClient
from safeboard.client.retry import RetryPolicy
from safeboard.content_types import type_for_name
from safeboard.errors import (
    BadRequest,
    ChecksumMismatch,
    ConfigError,
    Conflict,
    Gone,
    SafeboardError,
    ServiceUnavailable,
)
from safeboard.vocabulary import ArtifactKind

__all__ = [
    "CHUNK_SIZE",
    "KINDS",
    "FileChanged",
    "Progress",
    "TransferStopped",
    "backoff",
    "file_sha256",
    "guess_content_type",
    "safe_filename",
    "upload_file",
    "upload_id_for",
]

log = logging.getLogger("safeboard.client")

KINDS = tuple(kind.value for kind in ArtifactKind)
CHUNK_SIZE = 64 * 1024 * 1024  # bytes per upload request
READ_SIZE = 1024 * 1024  # bytes per read from disk
MAX_FAILURES = 8  # failed requests in a row, with no byte gained, before giving up
MAX_BACKOFF = 15.0
_POLICY = RetryPolicy(base=0.5, cap=MAX_BACKOFF, jitter=False)  # the client's one policy
# Connecting and each read or write of a socket; the request that brings the last byte
# waits for the server to check the SHA-256 of the whole file, hence the long read.
TIMEOUT = httpx.Timeout(30.0, read=600.0)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)`` in bytes; the phases: "hash" (reading the file before
an upload), "upload", "download", "verify" (hashing what was downloaded)."""


class FileChanged(Conflict):
    """The file changed while it was uploaded: hash it again and upload that."""


class TransferStopped(SafeboardError):
    """The transfer was asked to stop (``stop`` event); it resumes when run again. Its
    own code: a stop is not the server being down."""

    code = "transfer_stopped"


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


# --- small pieces ----------------------------------------------------------------------------


def file_sha256(path: Path, progress: Progress = _no_progress, size: int | None = None) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    total = size if size is not None else path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(READ_SIZE):
            digest.update(block)
            done += len(block)
            progress("hash", done, total)
    return digest.hexdigest()


def upload_id_for(
    run_id: str, path: Path, *, name: str, size: int, mtime_ns: int, sha256: str
) -> str:
    """The same upload (same run, same file unchanged, same name) always gets the same id,
    which makes the server answer with the artifact begun before (resume). 48 hex digits."""
    parts = [run_id, str(path), name, str(size), str(mtime_ns), sha256]
    joined = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:48]


def guess_content_type(path: Path | str) -> str:
    """A ``type/subtype`` for the declaration, from the allow-list the server also keeps
    (metadata; the server decides what it stores and serves)."""
    return type_for_name(str(path))


_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_filename(name: str, fallback: str) -> str:
    """A file name for an artifact's name, which is only metadata and may be anything:
    its last path component, without control characters or separators; ``fallback`` when
    nothing usable is left."""
    last = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    cleaned = _UNSAFE.sub("_", last).strip().lstrip(".")
    cleaned = cleaned.encode("utf-8", "ignore")[:200].decode("utf-8", "ignore")
    return cleaned or fallback


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed requests in a row."""
    return _POLICY.delay(failures)


def _transient(exc: SafeboardError) -> bool:
    """Worth another try once the server's state is read again: the connection dropped
    or timed out, the server failed (5xx), or another request of the same upload still
    holds it (409 while the server notices the old connection is gone)."""
    if isinstance(exc, FileChanged):
        return False
    return isinstance(exc, (ServiceUnavailable, Conflict)) or exc.code == "internal"


# --- upload ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Source:
        try:
            info = path.stat()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        return cls(path, info.st_size, info.st_mtime_ns)

    def check_unchanged(self) -> None:
        now = _Source.of(self.path)
        if (now.size, now.mtime_ns) != (self.size, self.mtime_ns):
            raise FileChanged(f"{self.path} changed while it was being uploaded: upload it again")


def _body(
    source: _Source, start: int, end: int, progress: Progress, stop: threading.Event | None
) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` of the file, read as the request sends them."""
    with source.path.open("rb") as handle:
        handle.seek(start)
        position = start
        while position < end:
            if stop is not None and stop.is_set():
                raise TransferStopped("upload stopped; it resumes from the server's offset")
            block = handle.read(min(READ_SIZE, end - position))
            if not block:
                raise FileChanged(f"{source.path} got shorter while it was being uploaded")
            position += len(block)
            yield block
            progress("upload", position, source.size)


def upload_file(
    client: ApiClient,
    run_id: str,
    path: Path | str,
    *,
    name: str | None = None,
    kind: str = "file",
    content_type: str | None = None,
    step: int | None = None,
    progress: Progress = _no_progress,
    chunk_size: int = CHUNK_SIZE,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    upload_id: str | None = None,
) -> dict[str, Any]:
    """Upload a file as an artifact of ``run_id``; return the artifact (``state`` ready).

    Running it again for the same file resumes where the server stopped receiving (or, if
    it is complete, returns it). ``upload_id`` (8 to 64 letters or digits) names the upload
    instead of the file's path and time: an importer's id for the same content."""
    if kind not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}")
    if chunk_size < 1:
        raise BadRequest("chunk_size: at least 1 byte")
    absolute = Path(path).expanduser().resolve()
    source = _Source.of(absolute)
    name = name or absolute.name
    digest = file_sha256(absolute, progress, source.size)
    source.check_unchanged()
    spec = {
        "name": name, "kind": kind, "size": source.size, "sha256": digest,
        "content_type": content_type or guess_content_type(absolute), "step": step,
        "upload_id": upload_id or upload_id_for(run_id, absolute, name=name, size=source.size,
                                                mtime_ns=source.mtime_ns, sha256=digest),
    }  # fmt: skip
    artifact = _declare(client, run_id, spec)
    failures, started_over = 0, False
    while artifact["state"] != "ready":
        try:
            artifact, failures = _send_next(
                client, artifact, source, failures,
                chunk_size=chunk_size, progress=progress, stop=stop, sleep=sleep,
            )  # fmt: skip
        except Gone:
            if started_over:
                raise
            # The server dropped the unfinished upload: it was idle longer than the server
            # keeps one (artifacts.incomplete_upload_hours). Declaring the same upload id
            # again makes a fresh artifact, from byte 0. (A deleted one, 404, stays deleted.)
            log.warning("the server no longer holds this upload of %s: starting it over", absolute)
            started_over = True
            artifact = _declare(client, run_id, spec)
    progress("upload", source.size, source.size)
    return artifact


def _declare(client: ApiClient, run_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    declared: dict[str, Any] = client.post(paths.run_artifacts(run_id), json=spec).json()
    return declared


def _send_next(
    client: ApiClient,
    artifact: dict[str, Any],
    source: _Source,
    failures: int,
    *,
    chunk_size: int,
    progress: Progress,
    stop: threading.Event | None,
    sleep: Callable[[float], None],
) -> tuple[dict[str, Any], int]:
    """Send the next chunk at the server's offset; after a transient failure, wait and read
    the server's state again. The artifact as the server holds it, and the failures in a
    row without a byte gained."""
    offset = int(artifact["received"])
    progress("upload", offset, source.size)
    end = min(source.size, offset + chunk_size)
    try:
        sent = _put(
            client, artifact["id"], source, offset=offset, end=end, progress=progress, stop=stop
        )
    except TransferStopped:
        raise
    except SafeboardError as exc:
        if not _transient(exc):
            raise
        failures += 1
        if failures >= MAX_FAILURES:
            raise ServiceUnavailable(
                f"upload of {source.path} failed {failures} times in a row ({exc.message}); "
                "run the same upload again to resume it"
            ) from None
        log.info("upload interrupted (%s); resuming in %.1f s", exc.message, backoff(failures))
        sleep(backoff(failures))
    else:
        return sent, 0
    found = _reread(client, artifact["id"], failures, sleep)
    if int(found["received"]) > offset:
        failures = 0  # bytes were gained: the connection works, it just dropped
    return found, failures


def _put(
    client: ApiClient,
    artifact_id: str,
    source: _Source,
    *,
    offset: int,
    end: int,
    progress: Progress,
    stop: threading.Event | None,
) -> dict[str, Any]:
    source.check_unchanged()
    headers = {
        "Upload-Offset": str(offset),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(end - offset),
    }
    try:
        response = client.put(
            paths.artifact_content(artifact_id),
            headers=headers,
            content=_body(source, offset, end, progress, stop),
            timeout=TIMEOUT,
        )
    except ChecksumMismatch:
        raise FileChanged(
            f"the server received bytes with another SHA-256 than {source.path} had when "
            "it was hashed (did the file change?); the upload was discarded: run it again"
        ) from None
    result: dict[str, Any] = response.json()
    return result


def _reread(
    client: ApiClient, artifact_id: str, failures: int, sleep: Callable[[float], None]
) -> dict[str, Any]:
    """The artifact as the server holds it now, retrying while the server is away."""
    while True:
        try:
            found: dict[str, Any] = client.get(paths.artifact(artifact_id)).json()
        except SafeboardError as exc:
            if not isinstance(exc, ServiceUnavailable) and exc.code != "internal":
                raise
            failures += 1
            if failures >= MAX_FAILURES:
                raise ServiceUnavailable(
                    f"the server stayed unreachable ({exc.message}); run the same upload "
                    "again to resume it"
                ) from None
            sleep(backoff(failures))
            continue
        return found
