"""HTTPS in front of a real safeboard server that answers the POSTs it is told to refuse
with 503 ``database_busy`` and ``Retry-After``, as a server whose database is locked does,
and passes everything else through. With ``older=True`` it also answers every POST of a
compact metric body (``wire.COMPACT_MEDIA_TYPE``) with the 415 a server from before those
bodies gives (tests/e2e/test_tensorboard_busy.py). It terminates TLS with the server's own
certificate, so a client's TLS path (CA verification on) stays the real one. Used by
tests/e2e/test_sdk_backoff.py and bench/log_stall.py."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from safeboard.wire import COMPACT_MEDIA_TYPE

__all__ = ["BusyGate"]

_JSON = {"Content-Type": "application/json"}
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class BusyGate(ThreadingHTTPServer):
    """``refuses(path)`` decides, per POST, whether it gets the 503; every POST answered is
    recorded in ``posts`` as (when, path, status). Serves from a thread of its own."""

    daemon_threads = True

    def __init__(
        self,
        tls_dir: Path,
        upstream: httpx.Client,
        refuses: Callable[[str], bool],
        *,
        retry_after: int = 1,
        older: bool = False,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.upstream = upstream
        self.refuses = refuses
        self.retry_after = retry_after
        self.older = older
        self.posts: list[tuple[float, str, int]] = []
        self.media_types: list[tuple[str, str, int]] = []  # each POST's path, type, status
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    @property
    def refused(self) -> int:
        return sum(1 for _, _, status in self.posts if status == 503)

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.upstream.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BusyGate

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(size) if size else b""
        post = self.command == "POST"
        if post and self.server.refuses(self.path):
            self._record(503)
            error = {"code": "database_busy", "message": "the database is busy", "request_id": "-"}
            headers = {
                "Content-Type": "application/json",
                "Retry-After": str(self.server.retry_after),
            }
            self._answer(503, json.dumps({"error": error}).encode(), headers)
            return
        if post and self.server.older and self.headers.get("content-type") == COMPACT_MEDIA_TYPE:
            self._record(415)
            error = {
                "code": "unsupported_media_type",
                "request_id": "-",
                "message": "send application/json or application/vnd.safeboard.columns",
            }  # fmt: skip  (what the server answered before compact bodies)
            self._answer(415, json.dumps({"error": error}).encode(), _JSON)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
        answer = self.server.upstream.request(
            self.command, self.path, content=body, headers=headers
        )
        if post:
            self._record(answer.status_code)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        self._answer(answer.status_code, answer.content, kept)

    def _record(self, status: int) -> None:
        self.server.posts.append((time.monotonic(), self.path, status))
        media_type = self.headers.get("content-type", "")
        self.server.media_types.append((self.path, media_type, status))

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay  # noqa: N815  (stdlib's names)
