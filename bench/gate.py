"""A gate in front of a safeboard server for the benchmark: while ``busy``, metric batches
get 503 ``database_busy`` with ``Retry-After`` (what a server whose database is locked
answers); everything else, and every batch once it is not busy, passes through. It
terminates TLS with the server's own certificate, so the SDK's client path is the real one."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

__all__ = ["BusyGate"]

RETRY_AFTER = 1
_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}


class BusyGate(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls_dir: Path, upstream: str, ca_file: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
        self.socket = context.wrap_socket(self.socket, server_side=True)
        verify = ssl.create_default_context(cafile=ca_file)
        self.upstream = httpx.Client(base_url=upstream, verify=verify, timeout=120, trust_env=False)
        self.busy = False
        self.refused = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

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
        if self.server.busy and self.command == "POST" and self.path.endswith("/metrics"):
            self.server.refused += 1
            error = {"code": "database_busy", "message": "the database is busy", "request_id": "-"}
            headers = {"Content-Type": "application/json", "Retry-After": str(RETRY_AFTER)}
            self._answer(503, json.dumps({"error": error}).encode(), headers)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        answer = self.server.upstream.request(
            self.command, self.path, content=body, headers=headers
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        self._answer(answer.status_code, answer.content, kept)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay  # noqa: N815  (stdlib's names)
