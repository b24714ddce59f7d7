"""How the server's HTTP/1.1 protocol reads, in process under uvicorn, plain and TLS: every
connection's bytes go through one buffer per event loop (server/connections.py), so

- bodies sent at once on several connections, in small interleaved pieces, each arrive
  whole and only on their own connection;
- a read allocates nothing the size of asyncio's read (256 KiB: glibc mapped and unmapped
  one for every read, a quarter of a small request's time on the event loop).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import socket
import ssl
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from safeboard.server.certificates import prepare_tls
from safeboard.server.connections import Admission, ConnectionLimits, gated_protocol
from safeboard.server.tls import server_ssl_context
from safeboard.settings import Settings
from tests.support.inproc import served_in_thread


async def digest_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers each request with the SHA-256 of its body."""
    assert scope["type"] == "http"
    digest = hashlib.sha256()
    while True:
        message = await receive()
        digest.update(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = digest.hexdigest().encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Served:
    port: int
    context: ssl.SSLContext | None  # the client's, for TLS

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        if self.context is None:
            return sock
        return self.context.wrap_socket(sock, server_hostname="127.0.0.1")

    def connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=20,
                                           context=self.context)  # fmt: skip


@pytest.fixture(scope="module", params=["plain", "tls"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    server_context = client_context = None
    if request.param == "tls":
        secure = {name: secrets.token_urlsafe(32)
                  for name in ("session_secret", "signing_key", "task_secrets_key")}  # fmt: skip
        data_dir = tmp_path_factory.mktemp("tls") / "data"
        material = prepare_tls(Settings(data_dir=data_dir, secure=secure, tls={"enabled": True}))
        server_context = server_ssl_context(material, "intermediate")
        client_context = ssl.create_default_context(cafile=material.ca_path)
    limits = ConnectionLimits(head_timeout=20, total=64, per_client=64)
    with served_in_thread(digest_app, gated_protocol(Admission(limits), server_context)) as port:
        yield Served(port, client_context)


def _head(size: int) -> bytes:
    return f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode()


def _response(sock: socket.socket) -> str:
    received = b""
    while len(received.partition(b"\r\n\r\n")[2]) < 64:  # a SHA-256 in hex
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early: {received!r}"
        received += chunk
    return received.partition(b"\r\n\r\n")[2].decode()


def _post(conn: http.client.HTTPConnection, body: bytes) -> str:
    conn.request("POST", "/", body=body)
    return conn.getresponse().read().decode()


def test_bodies_sent_together_arrive_whole_and_apart(served: Served) -> None:
    bodies = [os.urandom(300_000 + 7_919 * i) for i in range(4)]
    socks = [served.connect() for _ in bodies]
    try:
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(_head(len(body)))
        piece = 0
        while piece * 4096 < max(map(len, bodies)):  # a piece of each, in turn
            for sock, body in zip(socks, bodies, strict=True):
                part = body[piece * 4096 : (piece + 1) * 4096]
                if part:
                    sock.sendall(part)
            piece += 1
        got = [_response(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert got == [hashlib.sha256(body).hexdigest() for body in bodies]


def test_a_read_allocates_no_read_sized_buffer(served: Served) -> None:
    body = b"x" * 100
    conn = served.connection()
    try:
        # The connection (asyncio keeps a TLS connection's own 256 KiB) and the loop's buffer
        assert _post(conn, body) == hashlib.sha256(body).hexdigest()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(5):
                assert _post(conn, body) == hashlib.sha256(body).hexdigest()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        conn.close()
    # Client and server together hold a few KiB per request; one read of 256 KiB is over.
    assert peak - before < 128 * 1024, f"a read allocated {peak - before} bytes at its peak"
