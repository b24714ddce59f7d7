"""The e2e harness itself under pytest-xdist: a free port that another process takes
before the server binds it costs a retry on another port, not a failed test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import start_server

pytestmark = pytest.mark.e2e


def test_a_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        ports: Iterator[int] = iter([busy])
        real_free_port = conftest.free_port
        # The first "free" port is the taken one, as when another worker wins the race.
        monkeypatch.setattr(conftest, "free_port", lambda: next(ports, None) or real_free_port())
        server = start_server(tmp_path)
        try:
            assert server.port != busy
            with server.client() as client:
                assert client.get("/healthz").status_code == 200
        finally:
            server.stop()
