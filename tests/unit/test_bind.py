"""The listening socket (S1, P1): a clear error when taken, and no Nagle stall."""

from __future__ import annotations

import socket

import pytest

from safeboard.errors import ConfigError
from safeboard.server.run import bind_socket


def test_accepted_connections_have_tcp_nodelay() -> None:
    # Without it, a response written as headers then body waits for the client's delayed
    # ACK: about 40 ms per request on a reused connection (measured: 22 vs 400 requests/s).
    listener = bind_socket("127.0.0.1", 0)
    try:
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def test_a_taken_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="--port"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
