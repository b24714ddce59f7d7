"""The connection gate under uvicorn, in process: a response still on its way to a slow
reader is not cut by the head deadline (review finding: it was aborted mid-body)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from safeboard.server.connections import Admission, ConnectionLimits, gated_protocol
from tests.support.inproc import served_in_thread

BODY = b"x" * (8 * 1024 * 1024)
HEAD_TIMEOUT = 1.0


async def big_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    headers = [(b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})  # one chunk, like JSONResponse


@pytest.fixture
def port() -> Iterator[int]:
    limits = ConnectionLimits(head_timeout=HEAD_TIMEOUT, total=64, per_client=64)
    with served_in_thread(big_app, gated_protocol(Admission(limits), None)) as port:
        yield port


def test_a_slow_reader_gets_the_whole_response(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(HEAD_TIMEOUT * 2.5)  # the deadline passes with most of the body unsent
        received = bytearray()
        while chunk := client.recv(1 << 20):
            received += chunk
            if received.endswith(BODY[-16:]) and len(received) > len(BODY):
                break
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) == len(BODY)
