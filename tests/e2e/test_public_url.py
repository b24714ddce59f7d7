"""The addresses a server hands out (issue 11): invitation links printed by the CLI and the
startup link, with and without ``server.public_url``. A link for another machine never
points at 127.0.0.1 or 0.0.0.0."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
INVITE_LINK = re.compile(r"(https?://\S+)/invite#token=\S+")
SIGN_IN_LINE = re.compile(r"^  sign in as \S+: (\S+)/login#token=\S+$")
PUBLIC = "https://ml.example.test:9443"


def invite_origin(server: ServerProcess, username: str) -> str:
    added = run_cli("user", "add", username, "--invite", data_dir=server.data_dir)
    assert added.returncode == 0, added.stderr
    found = INVITE_LINK.search(added.stdout)
    assert found, added.stdout
    return found.group(1)


def sign_in_origin(server: ServerProcess) -> str:
    found = [m.group(1) for m in map(SIGN_IN_LINE.match, server.banner) if m]
    assert len(found) == 1, server.banner
    return found[0]


def test_a_server_on_every_interface_invites_by_the_machines_name(server_factory: Start) -> None:
    server = server_factory("--host", "0.0.0.0")
    origin = invite_origin(server, "alice")
    host = urlsplit(origin).hostname or ""
    assert host not in ("127.0.0.1", "0.0.0.0", "localhost", "::1", "::"), origin
    assert host in {socket.gethostname().lower(), socket.getfqdn().lower()}, origin
    assert origin == f"https://{host}:{server.port}"
    assert server.banner[0].endswith(f"listening on {origin}")
    # This machine's own clients still reach it on loopback; the startup link is for them.
    discovery = json.loads((server.data_dir / "discovery.json").read_text())
    assert discovery["url"] == server.url
    assert discovery["public_url"] == origin
    assert sign_in_origin(server) == server.url


def test_with_a_public_url_every_link_uses_it(server_factory: Start, tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(f'[server]\npublic_url = "{PUBLIC}/"\n')
    server = server_factory("--host", "0.0.0.0")
    assert invite_origin(server, "bob") == PUBLIC
    assert sign_in_origin(server) == PUBLIC
    assert (server.data_dir / "login-link").read_text().startswith(f"{PUBLIC}/login#token=")
    assert f"  public address {PUBLIC}" in server.banner
    with server.client() as client:  # the public name is a name the server answers to
        answer = client.get("/healthz", headers={"Host": "ml.example.test:9443"})
        assert answer.status_code == 200


def test_a_public_url_that_is_no_origin_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "bad"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text('[server]\npublic_url = "ml.example.test/x"\n')
    started = run_cli("server", "--port", "1", data_dir=data_dir, timeout=60)
    assert started.returncode != 0
    assert "server.public_url" in started.stderr
    assert "https://NAME" in started.stderr
    assert "Traceback" not in started.stderr
