"""The import socket: ``safeboard import tensorboard`` on the server's machine hands the
event files' descriptors to the server, which imports them (safeboard/importsock;
docs/security.md, "S19 The import socket").

``import.sock`` lives in the 0700 data directory beside ``plain.sock``, mode 0600: only
the account that runs the server (or root) can connect, and the peer's uid is checked
again (``SO_PEERCRED``). A request is then treated as any API request:

- it carries an API key, identified by the same identity chain as a bearer key (revoked,
  expired or unknown: refused); agents' and tasks' credentials are refused here;
- the key must be able to write projects at all (its scope), and each run and batch is
  made and stored through the same use cases as over HTTP, which check the grant in the
  project: runs, notes, config, images and histograms through the server's own HTTP
  socket with that key, the scalar batches through the metric ingest with the principal
  the key identified, identified again for every batch;
- the server never opens or resolves a path the client names: it reads only the
  descriptors the command opened (what that account can read anyway), each a regular file
  open for reading, never past the size it had on arrival (a file that keeps growing
  cannot keep an import going);
- bounds: :data:`MAX_CONNECTIONS` connections; :data:`AT_ONCE` imports at a time, a
  request read and its descriptors taken only in its turn (:data:`WAIT_SECONDS` for it,
  then ``busy``); :func:`files_at_once` descriptors and :data:`protocol.MAX_MESSAGE` bytes
  a request, all of it within :data:`REQUEST_SECONDS`; :data:`IDLE_SECONDS` for each
  answer the command owes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import resource
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from safeboard import heap
from safeboard.auth.authorizer import could_reach, credential_refusal
from safeboard.auth.identity import Presented
from safeboard.auth.permissions import CredentialKind, Permission
from safeboard.auth.principal import Principal
from safeboard.datadir import SocketAddress
from safeboard.errors import ConfigError, InvalidRequest, SafeboardError, Unauthenticated
from safeboard.importsock import protocol
from safeboard.leanhttp import import_http_lean

if TYPE_CHECKING:
    from safeboard.services import Services

__all__ = [
    "AT_ONCE", "BUSY", "IDLE_SECONDS", "MAX_CONNECTIONS", "REQUEST_SECONDS", "WAIT_SECONDS",
    "ImportListener", "Unsupported", "bind_import_socket", "files_at_once", "identify",
]  # fmt: skip

logger = logging.getLogger("safeboard.imports")

MAX_CONNECTIONS = 16
AT_ONCE = 2  # imports run at a time; each holds the interpreter's lock much of its time
WAIT_SECONDS = 300.0  # for a turn; then BUSY, and the command goes over HTTP
REQUEST_SECONDS = 60.0  # for the whole request and its descriptors, however slowly sent
IDLE_SECONDS = 60.0  # for each answer the command owes during the import
BUSY = "busy"  # an error code after which the command goes over HTTP (so is Unsupported's)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Unsupported(InvalidRequest):
    """A request this server takes only over HTTP: another protocol version, more files
    than it takes at once. The command goes over HTTP."""

    code = "unsupported"


class FileIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if "/" in name or "\0" in name or name in (".", ".."):
            raise ValueError("a file's name, not a path")
        return name


class RunIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    dir: str = Field(min_length=1, max_length=4096)
    files: list[FileIn] = Field(min_length=1, max_length=protocol.MAX_FILES)

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or "\0" in value:
            raise ValueError("an absolute path")
        return value


class ImportRequest(BaseModel):
    version: int
    api_key: str = Field(min_length=1, max_length=512, repr=False)
    project: str = Field(min_length=1, max_length=200)
    runs: list[RunIn] = Field(min_length=1, max_length=protocol.MAX_FILES)

    def file_count(self) -> int:
        return sum(len(run.files) for run in self.runs)


def bind_import_socket(data_dir: Path) -> socket.socket:
    """``import.sock`` in the data directory (0600), listening; one left by a crash is
    replaced (the server's own ``server.sock`` already proved no other server runs)."""
    path = data_dir / protocol.IMPORT_SOCKET
    address = SocketAddress(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        sock.bind(address.address)
        path.chmod(0o600)
        sock.listen(MAX_CONNECTIONS)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    finally:
        address.close()
    return sock


class ImportListener:
    """Accepts on the import socket in a thread; each connection in a thread of its own."""

    def __init__(self, sock: socket.socket, services: Services, data_dir: Path) -> None:
        self.sock, self.services, self.data_dir = sock, services, data_dir
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._running = threading.Semaphore(AT_ONCE)
        self._thread = threading.Thread(target=self._accept, name="safeboard-imports", daemon=True)
        self._closed = threading.Event()

    def start(self) -> ImportListener:
        """Accept from now on. httpcore (which httpx's transport imports at its first use,
        100 ms with trio's backend where trio is installed) loads now without trio, 10 to
        40 ms of the start rather than the first import's time (P7); in the main thread,
        before uvicorn starts, since trio is hidden from every import meanwhile. The
        import's own modules (the reader, the typed client: 60 ms, 3.4 MiB) load at the
        first import, so that a server that imports nothing does not hold them (P4)."""
        import_http_lean()
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        (self.data_dir / protocol.IMPORT_SOCKET).unlink(missing_ok=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # out of descriptors (EMFILE), or closed
                if self._closed.wait(0.1):
                    return
                continue
            if not self._connections.acquire(blocking=False):
                conn.close()  # more than MAX_CONNECTIONS at once: the command goes over HTTP
                continue
            try:
                threading.Thread(
                    target=self._serve, args=(conn,), name="safeboard-import", daemon=True
                ).start()
            except RuntimeError:  # no thread to be had now
                self._connections.release()
                conn.close()
                self._closed.wait(0.1)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(IDLE_SECONDS)
                if not _same_account(conn):
                    return
                # One turn at a time: the request parsed and its descriptors taken only
                # then, so that AT_ONCE imports hold at most AT_ONCE requests' worth.
                if not self._running.acquire(timeout=WAIT_SECONDS):
                    _answer_error(conn, BUSY, "the server is running other imports")
                    return
                try:
                    with heap.blocks_reused():
                        self._answer(conn)
                finally:
                    self._running.release()
        finally:
            self._connections.release()

    def _answer(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            deadline = time.monotonic() + REQUEST_SECONDS
            request = _request(protocol.receive(conn, deadline))
            fds = protocol.receive_fds(conn, request.file_count(), deadline)
            conn.settimeout(IDLE_SECONDS)
            _import(conn, self.services, self.data_dir, request, fds)
        except protocol.Gone as exc:  # the command went away, or stopped answering
            logger.info("an import over the import socket ended: %s", exc)
        except SafeboardError as exc:
            _answer_error(conn, exc.code, exc.message)
        except protocol.ProtocolError as exc:
            _answer_error(conn, "bad_request", f"import socket: {exc}")
        except OSError as exc:  # the server's own reading or writing
            logger.warning("an import over the import socket failed: %s", exc)
            _answer_error(conn, "io", f"the server could not go on with the import: {exc}")
        except Exception:  # a defect: logged with its traceback, the command told
            logger.exception("an import over the import socket failed")
            _answer_error(
                conn, "internal", "the server failed during the import (its log says why)"
            )
        finally:
            protocol.close_all(fds)


def _same_account(conn: socket.socket) -> bool:
    """The peer runs as the server's account or as root (the socket's mode already says so;
    checked again here)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _, uid, _ = _PEERCRED.unpack(raw)
    return uid in (os.getuid(), 0)


def _request(message: dict[str, Any]) -> ImportRequest:
    if message.get("version") != protocol.VERSION:
        raise Unsupported(
            f"import socket: protocol {message.get('version')!r}, this server speaks "
            f"{protocol.VERSION}"
        )
    try:
        request = ImportRequest.model_validate(message)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise InvalidRequest(f"import socket: {where}: {first['msg']}") from None
    most = files_at_once()
    if request.file_count() > most:
        raise Unsupported(f"import socket: at most {most} files at once")
    return request


def files_at_once() -> int:
    """The files one request may hand over: an eighth of the open-files limit (AT_ONCE
    imports then hold at most a quarter of it), at most protocol.MAX_FILES."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = protocol.MAX_FILES if soft == resource.RLIM_INFINITY else soft // 8
    return max(1, min(protocol.MAX_FILES, limit))


def _answer_error(conn: socket.socket, code: str, message: str) -> None:
    with contextlib.suppress(protocol.Gone, protocol.ProtocolError):
        protocol.send(conn, {"error": {"code": code, "message": message}})


def identify(services: Services, api_key: str) -> Principal:
    """The principal of ``api_key``, as for ``Authorization: Bearer``; only API keys."""
    presented = Presented(
        authorization=f"Bearer {api_key}", session_cookie=None, binding=None, address="local"
    )
    identity = services.request_auth.identity
    principal = identity.remembered(presented) or identity.identify(presented)
    if principal.credential is not CredentialKind.API_KEY:
        raise Unauthenticated("the import socket takes an API key")
    return principal


def _sizes(request: ImportRequest, fds: list[int]) -> list[int]:
    """Each descriptor's size now: a regular file's, open for reading, or the request is
    refused (a pipe or a device would block the import or never end; a directory has no
    records; a descriptor opened only for writing, or only as a path, reads nothing)."""
    names = [f"{run.dir}/{file.name}" for run in request.runs for file in run.files]
    sizes = []
    for name, fd in zip(names, fds, strict=True):
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequest(f"{name}: not a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_PATH or flags & os.O_ACCMODE == os.O_WRONLY:
            raise InvalidRequest(f"{name}: not open for reading")
        sizes.append(info.st_size)
    return sizes


def _import(
    conn: socket.socket,
    services: Services,
    data_dir: Path,
    request: ImportRequest,
    fds: list[int],
) -> None:
    sizes = _sizes(request, fds)
    principal = identify(services, request.api_key)
    if not could_reach(principal, Permission.PROJECTS_WRITE):
        raise credential_refusal(principal, Permission.PROJECTS_WRITE)
    from safeboard.server.import_runner import run_import  # noqa: PLC0415  (at the first)

    logger.info(
        "import of %d event files over the import socket by %s",
        len(fds), principal.username,
    )  # fmt: skip
    run_import(conn, services, data_dir, request, list(zip(fds, sizes, strict=True)))
