"""Live updates over server-sent events: within one SQLite server, and across two server
replicas sharing one PostgreSQL (NOTIFY/LISTEN); a revoked key ends its open streams within
a second, on the replica that revoked it and on the others (S8)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]


def _listen(server: ServerProcess, path: str, key: str, found: list[dict[str, Any]],
            ready: threading.Event, want: int, only: str | None) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    with server.client() as client, client.stream("GET", path, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and only in (None, kind):
                found.append({"kind": kind, **json.loads(line.removeprefix("data: "))})
                if len(found) >= want:
                    return


def _watch(
    server: ServerProcess, path: str, key: str, want: int, only: str | None = None
) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """Events of the stream at ``path`` (of kind ``only``), until ``want`` of them."""
    found: list[dict[str, Any]] = []
    ready = threading.Event()
    thread = threading.Thread(
        target=_listen, args=(server, path, key, found, ready, want, only), daemon=True
    )
    thread.start()
    assert ready.wait(10), "the stream did not open"
    return thread, found


def _key(server: ServerProcess) -> str:
    made = run_cli("key", "create", "--name", "live", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _make_run(client: httpx.Client, key: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/api/v1/projects", json={"name": "live"}, headers=headers)
    run = client.post("/api/v1/projects/live/runs", json={"name": "r"}, headers=headers)
    assert run.status_code == 201, run.text
    return str(run.json()["id"])


def _log(client: httpx.Client, key: str, run_id: str, step: int) -> None:
    body = {"batch_id": secrets.token_hex(8), "metrics": {"loss": {
        "steps": [step], "times": [1.7e9], "values": [0.5]}}}  # fmt: skip
    response = client.post(f"/api/v1/runs/{run_id}/metrics", json=body,
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_run_stream_on_sqlite(server_factory: Start) -> None:
    server = server_factory()
    key = _key(server)
    with server.client() as client:
        run_id = _make_run(client, key)
        thread, found = _watch(server, f"/api/v1/runs/{run_id}/events", key, want=3)
        _log(client, key, run_id, 1)
        _log(client, key, run_id, 2)
        client.patch(f"/api/v1/runs/{run_id}", json={"status": "finished"},
                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    thread.join(15)
    assert [(e["kind"], e["data"]) for e in found] == [
        ("metrics", {"last_step": {"loss": 1}}),
        ("metrics", {"last_step": {"loss": 2}}),
        ("run", {"status": "finished"}),
    ]


def test_stream_needs_access(server_factory: Start) -> None:
    server = server_factory()
    key = _key(server)
    with server.client() as client:
        run_id = _make_run(client, key)
        assert client.get(f"/api/v1/runs/{run_id}/events").status_code == 401
        run_cli("user", "add", "stranger", data_dir=server.data_dir)
        other = run_cli("key", "create", "--name", "x", "--user", "stranger",
                        data_dir=server.data_dir).stdout.strip()  # fmt: skip
        denied = client.get(f"/api/v1/runs/{run_id}/events",
                            headers={"Authorization": f"Bearer {other}"})  # fmt: skip
        assert denied.status_code == 404
        project = client.get(
            "/api/v1/projects/live/events", headers={"Authorization": f"Bearer {other}"}
        )
        assert project.status_code == 404


@pytest.mark.postgres
def test_a_replica_sees_what_another_stored(
    server_factory: Start, pg_url: str, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir(mode=0o700)
        (directory / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    replica_a = server_factory(name="a")
    replica_b = server_factory(name="b")
    key = _key(replica_a)  # one database: the key works on both replicas
    with replica_b.client() as client:
        run_id = _make_run(client, key)
        # The run's creation, through B before the stream opened, may still reach A's
        # stream after it (PostgreSQL's notices are not instant): the metrics are the test.
        thread, found = _watch(
            replica_a, "/api/v1/projects/live/events", key, want=1, only="metrics"
        )
        _log(client, key, run_id, 7)  # stored through replica B...
    thread.join(15)
    assert found == [  # ...announced by replica A
        {"kind": "metrics", "project_id": found[0]["project_id"], "run_id": run_id,
         "data": {"last_step": {"loss": 7}}, "id": found[0]["id"]},
    ]  # fmt: skip


def _until_end(
    server: ServerProcess, path: str, key: str
) -> tuple[threading.Thread, dict[str, Any]]:
    """Read a stream in a thread until the server ends it; ``seen`` gets the last event and
    the moment the stream closed."""
    seen: dict[str, Any] = {}
    ready = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with server.client() as client, client.stream("GET", path, headers=headers,
                                                      timeout=30) as r:  # fmt: skip
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                elif line.startswith("event: "):
                    seen["event"] = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen["data"] = json.loads(line.removeprefix("data: "))
        seen["closed"] = time.monotonic()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert ready.wait(10), "the stream did not open"
    return thread, seen


def _admin_key(server: ServerProcess) -> str:
    made = run_cli("key", "create", "--name", "admin", "--scope", "admin",
                   data_dir=server.data_dir)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _revoke(client: httpx.Client, admin: str, key: str) -> None:
    revoked = client.delete(f"/api/v1/keys/{key.split('_')[1]}",
                            headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
    assert revoked.status_code == 204, revoked.text


def test_a_revoked_key_ends_its_stream_on_sqlite(server_factory: Start) -> None:
    server = server_factory()
    key, admin = _key(server), _admin_key(server)
    with server.client() as client:
        _make_run(client, key)
        thread, seen = _until_end(server, "/api/v1/projects/live/events", key)
        started = time.monotonic()
        _revoke(client, admin, key)
    thread.join(5)
    assert seen.get("event") == "end", "the stream outlived its key"
    assert seen["data"]["error"]["code"] == "unauthenticated"
    assert seen["closed"] - started < 1.0


@pytest.mark.postgres
def test_a_key_revoked_through_one_replica_ends_its_stream_on_another(
    server_factory: Start, pg_url: str, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir(mode=0o700)
        (directory / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    replica_a = server_factory(name="a")
    replica_b = server_factory(name="b")
    key, admin = _key(replica_a), _admin_key(replica_b)
    with replica_b.client() as client:
        _make_run(client, key)
        thread, seen = _until_end(replica_a, "/api/v1/projects/live/events", key)
        started = time.monotonic()
        _revoke(client, admin, key)  # through replica B...
    thread.join(5)
    assert seen.get("event") == "end", (
        "the stream outlived its key"
    )  # ...ends the stream on replica A
    assert seen["data"]["error"]["code"] == "unauthenticated"
    assert seen["closed"] - started < 1.0
