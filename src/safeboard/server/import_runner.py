"""An import over the import socket, run by the server (server/imports.py checked the
request): the same ``make_run`` and ``RunImport`` as ``safeboard import tensorboard`` over
HTTP, reading the descriptors the command handed over.

What the import asks of the server goes where it goes over HTTP, with the user's key:
runs, notes, config, images and histograms through the server's own local socket (every
request authenticated and authorized as any other); the scalar batches, nearly all of an
import's bytes, to the metric ingest directly (no HTTP framing, no second copy of the body),
as the principal the key identifies, identified again for each batch. Batch ids come
from the files' names and the cuts, as over HTTP: an import begun one way and done the
other stores nothing twice (R1). The cuts where this import stops reading are sent to
the command, which keeps them in its ledger before the batch is stored.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeboard.client.credentials import ServerAccess, read_discovery
from safeboard.client.typed import Client
from safeboard.errors import Conflict, InvalidRequest, ServiceUnavailable
from safeboard.eventfiles import RecordReader, accel
from safeboard.importsock import protocol
from safeboard.logdirs import CutLedger
from safeboard.metrics.routes import parse_compact
from safeboard.sdk.tbrun import Counts, RunImport
from safeboard.sdk.tbruns import make_run
from safeboard.server.imports import identify

if TYPE_CHECKING:
    from safeboard.server.imports import ImportRequest
    from safeboard.services import Services

__all__ = ["run_import"]


class Conversation:
    """The server's side of one import's messages."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def say(self, line: str) -> None:
        protocol.send(self.conn, {"say": line})

    def ask(self, message: dict[str, Any], answer: str) -> Any:
        """Send ``message``; the command's answer's ``answer`` field."""
        protocol.send(self.conn, message)
        reply = protocol.receive(self.conn)
        if answer not in reply:
            raise protocol.ProtocolError(f"expected {answer!r} from the command")
        return reply[answer]


class SentLedger(CutLedger):
    """The command's ledger of one run, as it sent it; a new cut goes to the command,
    which keeps it, before the batch that ends there is stored."""

    def __init__(self, cuts: Any, run_id: str, talk: Conversation) -> None:
        super().__init__(None)  # kept in memory here: the command writes its file
        self.run_id, self.talk = run_id, talk
        if not isinstance(cuts, dict):
            raise protocol.ProtocolError("a ledger that is not an object")
        try:
            self._cuts = self.parsed(cuts)
        except (TypeError, ValueError, OverflowError):
            raise protocol.ProtocolError("a ledger whose cuts are not numbers") from None

    def add(self, file_name: str, offset: int) -> None:
        if offset not in self._cuts.get(file_name, []):
            self.talk.ask({"cut": [self.run_id, file_name, offset]}, "ok")
            super().add(file_name, offset)


class IngestingClient(Client):
    """The user's client over the server's own local socket, but scalar batches (compact
    bodies) go to the metric ingest directly, as the user the key identifies."""

    def __init__(self, access: ServerAccess, services: Services, api_key: str) -> None:
        super().__init__(access.client())
        self.services, self._key = services, api_key

    def post_metrics(
        self, run_id: str, body: bytes | Mapping[str, Any], *, media_type: str | None = None
    ) -> dict[str, Any]:
        if not isinstance(body, bytes):
            return super().post_metrics(run_id, body, media_type=media_type)
        principal = identify(self.services, self._key)  # revoked meanwhile: refused
        batch_id, series = parse_compact(body)
        done = self.services.metrics.ingest(principal, run_id, batch_id, series)
        return {"batch_id": batch_id, "stored": done.stored, "duplicate": done.duplicate}


class DescriptorImport(RunImport):
    """A run's files read from the descriptors handed over, each up to its size then."""

    def __init__(
        self, client: Client, run_id: str, directory: Path,
        files: dict[Path, tuple[int, int]], **options: Any,
    ) -> None:  # fmt: skip
        super().__init__(client, run_id, directory, **options)
        self.handed = files  # (descriptor, size) by the file's path on the command's side

    def _event_files(self) -> list[Path]:
        return sorted(self.handed)

    def _reader(self, path: Path) -> RecordReader:
        fd, size = self.handed[path]
        return RecordReader(path, opener=lambda: os.fdopen(os.dup(fd), "rb"), end=size)


@functools.cache
def _unused_context() -> ssl.SSLContext:
    """For a plain-HTTP server's access: no TLS crosses its Unix socket, and httpx would
    otherwise load the system's CAs for every import's client (30 ms)."""
    return ssl.create_default_context()


def _access(data_dir: Path, api_key: str) -> ServerAccess:
    """This server as its local clients reach it (its discovery file), with ``api_key``."""
    local = read_discovery(data_dir)
    if local is None:
        raise ServiceUnavailable("the server is starting or stopping: try again")
    verify = _unused_context() if local.verify is True else local.verify
    return ServerAccess(
        local.url, api_key, verify, "arguments", local.local_socket,
        plain_socket=local.plain_socket,
    )  # fmt: skip


def run_import(
    conn: socket.socket,
    services: Services,
    data_dir: Path,
    request: ImportRequest,
    files: list[tuple[int, int]],
) -> None:
    """Make the runs, read every file, finish the runs; answer ``done`` with the counts."""
    talk = Conversation(conn)
    if accel.SCAN is None:  # it works, slower: the operator is told how to build it
        talk.say(accel.NOT_BUILT)
    handed = iter(files)
    with IngestingClient(_access(data_dir, request.api_key), services, request.api_key) as client:
        project, made = request.project, {}
        for run in request.runs:
            made[run.name], project = make_run(client, project, run.name, run.dir, talk.say)
        ledgers = talk.ask({"runs": made}, "ledgers")
        if not isinstance(ledgers, dict):
            raise InvalidRequest("import socket: ledgers: an object")
        importers = []
        for run in request.runs:
            directory = Path(run.dir)
            mine = {directory / file.name: next(handed) for file in run.files}
            run_id = made[run.name]
            ledger = SentLedger(ledgers.get(run_id, {}), run_id, talk)
            importer = DescriptorImport(
                client, run_id, directory, mine, say=talk.say, ledger=ledger
            )
            importer.pass_()
            importers.append((run.name, run_id, importer))
        done = []
        for name, run_id, importer in importers:
            importer.close()
            with contextlib.suppress(Conflict):  # finished by an earlier import
                client.finish_run(run_id)
            done.append({"name": name, "run_id": run_id, "counts": _counts(importer.counts)})
    protocol.send(conn, {"done": done})


def _counts(counts: Counts) -> dict[str, Any]:
    return {
        "points": counts.points, "images": counts.images, "texts": counts.texts,
        "histograms": counts.histograms, "hparams": counts.hparams, "errors": counts.errors,
    }  # fmt: skip
