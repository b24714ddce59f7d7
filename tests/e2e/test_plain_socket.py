"""A TLS server's plain Unix socket (``plain.sock``, datadir.PLAIN_SOCKET): local clients
of the discovery file send plain HTTP through it; ``server.sock`` keeps TLS (clients that
predate it); the TCP port keeps TLS; nothing is served without TLS outside the 0700 data
directory; a plain server makes no second socket."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from safeboard.client.credentials import read_discovery
from safeboard.client.local_socket import LocalSocketTransport
from tests.e2e.conftest import ServerProcess, cli_env, run_cli

Start = Callable[..., ServerProcess]


def raw_get(address: Path | tuple[str, int], request: bytes) -> bytes:
    """What a Unix socket (a path) or a TCP port answers to ``request`` (bytes as sent,
    nothing else)."""
    family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(address) if isinstance(address, Path) else address)
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def healthz(server: ServerProcess) -> bytes:
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n"
    return f"{head}\r\n".encode()


def test_a_tls_servers_plain_socket_serves_local_clients(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls")
    plain, tls = server.data_dir / "plain.sock", server.data_dir / "server.sock"
    discovery = json.loads((server.data_dir / "discovery.json").read_text())
    assert discovery["plain_socket"] == str(plain)
    assert discovery["url"].startswith("https://")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700

    assert raw_get(plain, healthz(server)).startswith(b"HTTP/1.1 200")
    # server.sock and the port still speak TLS only: a plain request gets no answer
    assert not raw_get(tls, healthz(server)).startswith(b"HTTP/1.1 200")
    assert not raw_get(("127.0.0.1", server.port), healthz(server)).startswith(b"HTTP/1.1 200")

    access = read_discovery(server.data_dir)
    assert access is not None
    assert access.plain_socket == plain
    with access.client() as api:
        assert isinstance(api._http._transport, LocalSocketTransport)
        assert api._http._transport.plain
        projects = api.request("GET", "/api/v1/projects")
        assert projects.status_code == 200
        assert str(projects.request.url).startswith("https://")  # the caller's URL kept

    # The CLI goes through it: a project made and listed, as before
    env = cli_env(server.data_dir)
    made = run_cli("projects", "create", "through-plain", env=env)
    assert made.returncode == 0, made.stderr
    listed = run_cli("projects", "list", env=env)
    assert "through-plain" in listed.stdout, listed.stderr


def test_a_client_without_it_still_goes_through_tls_on_server_sock(
    server_factory: Start,
) -> None:
    server = server_factory("--tls")
    access = read_discovery(server.data_dir)
    assert access is not None
    older = type(access)(
        access.url, access.api_key, access.verify, access.source, access.local_socket,
        access.discovery_dir,
    )  # fmt: skip  # as a client that knows only "socket" reads the file
    with older.client() as api:
        assert not api._http._transport.plain
        assert api.request("GET", "/api/v1/projects").status_code == 200


def test_a_plain_server_makes_no_second_socket(server_factory: Start) -> None:
    server = server_factory()  # loopback: plain HTTP, server.sock plain already
    discovery = json.loads((server.data_dir / "discovery.json").read_text())
    assert "plain_socket" not in discovery
    assert not (server.data_dir / "plain.sock").exists()
    assert raw_get(server.data_dir / "server.sock", healthz(server)).startswith(b"HTTP/1.1 200")
