"""Idle and slow connections cannot take the server from others (issue 10, item 1).

A real server process, with and without TLS; the attacker's sockets come from 127.0.0.2,
the honest client from 127.0.0.1 (Linux routes all of 127.0.0.0/8 to the loopback).
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess

ATTACKER = "127.0.0.2"
HEAD_TIMEOUT = 2  # seconds, written to the server's safeboard.toml below
SOCKETS = 1100


@contextlib.contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """This process's soft limit on open files is ``soft`` (children inherit it) meanwhile."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < soft:
        hard = soft  # CI runs as root, which may raise the hard limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


def _start(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], tls: bool
) -> ServerProcess:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(f"[server]\nrequest_head_timeout = {HEAD_TIMEOUT}\n")
    return server_factory("--tls" if tls else "--no-tls")


def _connect(server: ServerProcess, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", server.port), timeout=5, source_address=(source, 0)
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


def _tls_client(server: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def _closed_within(sock: socket.socket, seconds: float, *, trickle: bool = False) -> float:
    """Seconds until the server closes ``sock``; fails after ``seconds``.

    With ``trickle`` it sends one header line every half second meanwhile (slowloris).
    """
    start = time.monotonic()
    sock.settimeout(0.5)
    n = 0
    while time.monotonic() - start < seconds:
        try:
            if trickle:
                sock.sendall(f"X-Slow-{n}: {n}\r\n".encode())
                n += 1
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - start
    raise AssertionError(f"the connection was still open after {seconds} s")


def _open_files_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no 'Max open files' line")


def _api_key(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def _timed_request(server: ServerProcess) -> float:
    """An authenticated API request from 127.0.0.1 on a new connection; its duration."""
    start = time.monotonic()
    with server.client() as client:
        response = client.get(
            "/api/v1/projects", headers={"Authorization": f"Bearer {_api_key(server)}"}
        )
    assert response.status_code == 200, response.text
    return time.monotonic() - start


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_idle_connection_closed_after_head_timeout(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], tls: bool
) -> None:
    server = _start(tmp_path, server_factory, tls)
    idle = _connect(server)
    if tls:  # a finished handshake, then nothing
        idle = _tls_client(server).wrap_socket(idle, server_hostname="localhost")
    with idle:
        assert _closed_within(idle, HEAD_TIMEOUT + 3) >= HEAD_TIMEOUT - 0.5


def test_tls_handshake_never_started_is_closed(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    server = _start(tmp_path, server_factory, tls=True)
    with _connect(server) as raw:  # TCP only: no ClientHello
        _closed_within(raw, HEAD_TIMEOUT + 3)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_slowloris_head_closed(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], tls: bool
) -> None:
    server = _start(tmp_path, server_factory, tls)
    sock = _connect(server)
    if tls:
        sock = _tls_client(server).wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        _closed_within(sock, HEAD_TIMEOUT + 3, trickle=True)


def test_keep_alive_then_slow_second_head_closed(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    """The deadline is armed again after each response, not only for the first request."""
    server = _start(tmp_path, server_factory, tls=False)
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        _closed_within(sock, HEAD_TIMEOUT + 3, trickle=True)


def test_slow_request_still_answered(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    """A head delivered in pieces inside the deadline is served as usual."""
    server = _start(tmp_path, server_factory, tls=False)
    with _connect(server, source="127.0.0.1") as sock:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(HEAD_TIMEOUT / 4)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_thousand_idle_and_slow_sockets_do_not_starve_others(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], tls: bool
) -> None:
    with open_files_limit(1024):  # the usual default soft limit, which the flood exceeds
        server = _start(tmp_path, server_factory, tls)
    soft, hard = _open_files_limits(server.process.pid)
    assert soft == hard, "the server raises its soft open-files limit to the hard one"
    held: list[socket.socket] = []
    with open_files_limit(SOCKETS + 512), contextlib.ExitStack() as stack:
        deadline = time.monotonic() + 30
        for i in range(SOCKETS):
            assert time.monotonic() < deadline, "opening the sockets took too long"
            with contextlib.suppress(ConnectionError, TimeoutError):
                sock = _connect(server)
                if i % 2:  # every other one starts a request head and never ends it
                    sock.sendall(b"GET /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                held.append(stack.enter_context(sock))
        time.sleep(0.5)  # the server accepts (and turns away) the flood
        durations = [_timed_request(server) for _ in range(3)]
        assert max(durations) < 1, durations
        log = server.log
        assert "Traceback" not in log, log
