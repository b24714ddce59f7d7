"""Attacks on the artifact file server of a real server process over TLS, on SQLite and
PostgreSQL (S12): request targets sent byte for byte (no client library normalises them),
names that look like paths, a symlink planted in storage. Nothing outside the store is
read or written."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import ServerProcess, run_cli

Start = Callable[..., ServerProcess]
SECRET_MARKERS = (b"session_secret", b"signing_key", b"BEGIN", b"root:")


def _server(server_factory: Start, tmp_path: Path, db_url: str) -> ServerProcess:
    if db_url.startswith("postgresql"):
        data_dir = tmp_path / "srv"
        data_dir.mkdir(mode=0o700)
        (data_dir / "safeboard.toml").write_text(f'[database]\nurl = "{db_url}"\n')
    return server_factory("--tls")


def _key(server: ServerProcess) -> str:
    key: str = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    return key


def raw(server: ServerProcess, key: str, method: str, target: str, body: bytes = b"") -> bytes:
    """One request with ``target`` exactly as given; the whole response."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head.encode("latin-1") + body)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file outside the database and the log, with its content."""
    skip = ("safeboard.db", "safeboard.db-wal", "safeboard.db-shm", "safeboard.db-journal")
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name not in skip
    }


EVIL = [
    "../../secrets.toml",
    "..%2f..%2fsecrets.toml",
    "..%2F..%2Fsecrets.toml",
    "%2e%2e%2f%2e%2e%2fsecrets.toml",
    "%2e%2e/%2e%2e/secrets.toml",
    "..%252f..%252fsecrets.toml",
    "..%5c..%5csecrets.toml",
    "%2fetc%2fpasswd",
    "%00",
    "x%00y",
    "....//....//secrets.toml",
]


def test_request_targets_never_reach_outside_the_store(
    server_factory: Start, tmp_path: Path, db_url: str
) -> None:
    server = _server(server_factory, tmp_path, db_url)
    key = _key(server)
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.post("/api/v1/projects", json={"name": "p"}).status_code == 201
        run_id = client.post("/api/v1/projects/p/runs", json={"name": "r"}).json()["id"]
        data = b"artifact bytes"
        made = client.post(
            f"/api/v1/runs/{run_id}/artifacts",
            json={"name": "../../../../secrets.toml", "size": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        real = made.json()["id"]
        done = client.put(
            f"/api/v1/artifacts/{real}/content", content=data, headers={"Upload-Offset": "0"}
        )
        assert done.json()["state"] == "ready"
    before = _snapshot(server.data_dir)
    targets = [(method, target) for evil in EVIL for method, target in _targets(server, real, evil)]
    for method, target in targets:
        response = raw(server, key, method, target, b"x" if method in ("PUT", "POST") else b"")
        assert _status(response) in (400, 404, 405, 422), (method, target, response[:300])
        assert not any(marker in response for marker in SECRET_MARKERS), (method, target)
    assert _snapshot(server.data_dir) == before  # nothing written, nothing removed
    stored = [p for p in (server.data_dir / "artifacts").rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [real]
    assert not (tmp_path / "secrets.toml").exists()
    assert "Traceback" not in server.log


def _targets(server: ServerProcess, real: str, evil: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/api/v1/artifacts/{evil}"),
        ("GET", f"/api/v1/artifacts/{evil}/content"),
        ("GET", f"/api/v1/artifacts/{real}/{evil}"),
        ("PUT", f"/api/v1/artifacts/{evil}/content"),
        ("DELETE", f"/api/v1/artifacts/{evil}"),
        ("POST", f"/api/v1/artifacts/{evil}/preview"),
        ("GET", f"/api/v1/runs/{evil}/artifacts"),
        ("POST", f"/api/v1/runs/{evil}/artifacts"),
        ("GET", f"/files/preview/{evil}"),
        ("GET", f"https://127.0.0.1:{server.port}/api/v1/artifacts/{evil}/content"),
    ]


def test_a_planted_symlink_is_refused_by_a_real_server(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls")
    key = _key(server)
    secrets_file = server.data_dir / "secrets.toml"
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        client.post("/api/v1/projects", json={"name": "p"})
        run_id = client.post("/api/v1/projects/p/runs", json={"name": "r"}).json()["id"]
        data = b"z" * 100
        made = client.post(
            f"/api/v1/runs/{run_id}/artifacts",
            json={"name": "m", "size": 100, "sha256": hashlib.sha256(data).hexdigest()},
        ).json()
        client.put(f"/api/v1/artifacts/{made['id']}/content", content=data,
                   headers={"Upload-Offset": "0"})  # fmt: skip
        path = server.data_dir / "artifacts" / made["id"][:2] / made["id"]
        path.unlink()
        path.symlink_to(secrets_file)
        got = client.get(f"/api/v1/artifacts/{made['id']}/content")
        assert got.status_code == 500
        assert not any(marker in got.content for marker in SECRET_MARKERS)
        assert got.json()["error"]["request_id"]


def _open_files(pid: int, path: Path) -> int:
    """How many descriptors of process ``pid`` are open on ``path`` (deleted or not)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue  # closed meanwhile
        if str(target).removesuffix(" (deleted)") == str(path):
            count += 1
    return count


def test_downloads_dropped_before_their_body_leave_no_open_file(
    server_factory: Start, tmp_path: Path
) -> None:
    """A client (or anyone holding a preview link) that hangs up at once must not leave a
    file descriptor behind: enough of them would stop the server opening anything."""
    server = server_factory("--tls")
    key = _key(server)
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        client.post("/api/v1/projects", json={"name": "p"})
        run_id = client.post("/api/v1/projects/p/runs", json={"name": "r"}).json()["id"]
        data = b"\x89PNG\r\n\x1a\n" + b"\0" * 4_000_000
        made = client.post(
            f"/api/v1/runs/{run_id}/artifacts",
            json={"name": "big.png", "size": len(data), "content_type": "image/png",
                  "sha256": hashlib.sha256(data).hexdigest()},
        ).json()  # fmt: skip
        client.put(f"/api/v1/artifacts/{made['id']}/content", content=data,
                   headers={"Upload-Offset": "0"})  # fmt: skip
        link = client.post(f"/api/v1/artifacts/{made['id']}/preview").json()["url"]
    path = (server.data_dir / "artifacts" / made["id"][:2] / made["id"]).resolve()
    context = ssl.create_default_context(cafile=str(server.ca_path))
    for target, auth in [(f"/api/v1/artifacts/{made['id']}/content", key), (link, "")] * 15:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(
                f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Authorization: Bearer {auth}\r\n\r\n".encode()
            )  # and hang up without reading
    # A request's count goes up once its response has ended (sent, or the client found
    # gone), file closed: wait for all 30, however busy the machine, then look.
    scrape = run_cli("key", "create", "--name", "scrape", "--scope", "metrics",
                     data_dir=server.data_dir).stdout.strip()  # fmt: skip
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {scrape}"
        deadline = time.monotonic() + 60
        while _downloads_ended(client) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _downloads_ended(client) == 30
    assert _open_files(server.process.pid, path) == 0


def _downloads_ended(client: httpx.Client) -> int:
    """Responses the server has ended on the two download routes, from its metrics."""
    routes = r"/api/v1/artifacts/\{artifact_id\}/content|/files/preview/\{token\}"
    pattern = re.compile(
        rf'^safeboard_http_requests_total\{{method="GET",route="(?:{routes})"[^}}]*\}} (\S+)$',
        re.M,
    )
    return sum(int(float(count)) for count in pattern.findall(client.get("/metrics").text))
