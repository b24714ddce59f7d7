"""Infrastructure faults end to end (issue 13): a real server process whose PostgreSQL is
stopped, whose SQLite write lock another process holds, whose disk is full. Each answers
503 with Retry-After and a code that says which, /healthz names the degraded dependency,
the log says so once per cause per interval (no traceback per request), and the server
serves again once the fault is gone. A start on a full disk says so and names the path.

The full disks are small tmpfs mounts: these tests run as root (CI does); where mount is
refused they fail and say why, they never skip."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from psycopg import sql

from safeboard import wire
from safeboard.ids import new_id
from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli
from tests.support.pgcluster import own_cluster

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
PACKED = {"Content-Type": wire.MEDIA_TYPE}
UPLOAD = {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
LOG_INTERVAL_S = 10  # safeboard/api/faults.py


def _settings(data_dir: Path, toml: str) -> None:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    (data_dir / "safeboard.toml").write_text(toml)


def _headers(data_dir: Path) -> dict[str, str]:
    made = run_cli("key", "create", "--name", "faults", "--scope", "write", data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


def _metrics_url(client: httpx.Client, headers: dict[str, str]) -> str:
    made = client.post("/api/v1/projects", json={"name": "mnist"}, headers=headers)
    assert made.status_code == 201, made.text
    run = client.post("/api/v1/projects/mnist/runs", json={"name": "base"}, headers=headers)
    assert run.status_code == 201, run.text
    return f"/api/v1/runs/{run.json()['id']}/metrics"


def _batch(keys: int = 1, points: int = 1) -> bytes:
    column = {
        "steps": list(range(points)),
        "times": [1.7e9 + i for i in range(points)],
        "values": [float(int.from_bytes(os.urandom(4))) for _ in range(points)],
    }
    return wire.pack(new_id(), {f"k{i:04d}": column for i in range(keys)})


def _assert_503(response: httpx.Response, code: str, retry_after: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["retry-after"] == retry_after
    assert f"retry after {retry_after} s" in response.json()["error"]["message"]


def _assert_logged_once_per_interval(server: ServerProcess, label: str, seconds: float) -> None:
    """One line for the cause (a second one only if the interval passed), no traceback."""
    log = server.log
    lines = [line for line in log.splitlines() if label in line]
    assert 1 <= len(lines) <= 1 + int(seconds // LOG_INTERVAL_S), log
    assert "Traceback" not in log, log
    assert "internal server error" not in log, log


# PostgreSQL stopped


@pytest.mark.postgres
def test_postgresql_stopped_is_503_database_unavailable_then_served_again(
    server_factory: Start, tmp_path: Path
) -> None:
    with own_cluster() as cluster:
        with cluster.server.admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("faults")))
        _settings(tmp_path / "srv", f'[database]\nurl = "{cluster.server.url("faults")}"\n')
        server = server_factory()
        headers = _headers(server.data_dir)
        with server.client() as client:
            url = _metrics_url(client, headers)
            assert client.post(url, content=_batch(), headers=PACKED | headers).status_code == 200

            cluster.stop()
            began = time.monotonic()
            for _ in range(3):
                response = client.post(url, content=_batch(), headers=PACKED | headers)
                _assert_503(response, "database_unavailable", "5")
            read = client.get("/api/v1/projects/mnist/runs", headers=headers)
            _assert_503(read, "database_unavailable", "5")
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            assert health.json()["database"] == "unreachable"
            _assert_logged_once_per_interval(
                server, "database unavailable", time.monotonic() - began
            )

            cluster.start()
            assert client.get("/healthz").status_code == 200
            stored = client.post(url, content=_batch(), headers=PACKED | headers)
            assert stored.status_code == 200, stored.text
            assert client.get("/api/v1/projects/mnist/runs", headers=headers).status_code == 200


# SQLite's write lock held by another process


def test_a_sqlite_write_lock_held_past_the_busy_wait_is_503_database_busy(
    server_factory: Start, tmp_path: Path
) -> None:
    _settings(tmp_path / "srv", "[database]\nsqlite_busy_timeout_ms = 300\n")
    server = server_factory()
    headers = _headers(server.data_dir)
    with server.client() as client:
        url = _metrics_url(client, headers)
        holder = sqlite3.connect(server.data_dir / "safeboard.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # held far longer than the server's 300 ms
        began = time.monotonic()
        try:
            for _ in range(3):
                response = client.post(url, content=_batch(), headers=PACKED | headers)
                _assert_503(response, "database_busy", "1")
            # The CLI, on the same database, says so too (not "internal error").
            cli = run_cli("key", "create", "--name", "busy", data_dir=server.data_dir)
            assert cli.returncode == 2, cli.stderr
            assert "the database is busy" in cli.stderr, cli.stderr
            assert "database is locked" in cli.stderr, cli.stderr
            assert "Traceback" not in cli.stderr
        finally:
            holder.rollback()
            holder.close()
        _assert_logged_once_per_interval(server, "database busy", time.monotonic() - began)
        stored = client.post(url, content=_batch(), headers=PACKED | headers)
        assert stored.status_code == 200, stored.text


# A full disk


@contextmanager
def small_disk(path: Path, size: str = "32m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (mode 0700), unmounted afterwards."""
    path.mkdir(mode=0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {path} to fill it ({mounted.stderr.strip()}): the "
            "full-disk tests need root and a kernel that allows mount, as CI has",
            pytrace=False,
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(disk: Path) -> None:
    """Write to ``disk`` until it has no byte left."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0


def _start_fails(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safeboard", "server", "--port", str(free_port())],
        env=cli_env(data_dir), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _assert_says_disk_full(started: subprocess.CompletedProcess[str], path: Path) -> None:
    said = started.stdout + started.stderr
    assert started.returncode != 0, said
    assert "the disk is full" in said, said
    assert str(path) in said, said  # names where
    assert "Traceback" not in said, said
    assert "internal error" not in said, said


def test_a_full_data_disk_is_503_disk_full_and_a_start_on_it_names_the_path(
    server_factory: Start, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "srv") as disk:
        _settings(disk, "[server]\nmin_free_disk_bytes = 1048576\n")
        server = server_factory()
        headers = _headers(server.data_dir)
        with server.client() as client:
            url = _metrics_url(client, headers)
            assert client.post(url, content=_batch(), headers=PACKED | headers).status_code == 200
            fill(disk)
            began = time.monotonic()
            # More than the write-ahead log holds already: the database file must grow.
            response = client.post(url, content=_batch(500, 400), headers=PACKED | headers)
            _assert_503(response, "disk_full", "30")
            assert "disk is full" in response.json()["error"]["message"]
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["disk"] == "full"
            assert health.json()["database"] == "ok"
            assert str(disk) not in health.text  # states, not paths (S17)
            _assert_logged_once_per_interval(server, "disk full", time.monotonic() - began)
        server.stop()
        fresh = disk / "fresh"  # a first start's data directory, with its settings file
        _settings(fresh, "[server]\nmin_free_disk_bytes = 1048576\n")
        fill(disk)  # what the stop gave back (its write-ahead log)
        before = _files(disk)
        _assert_says_disk_full(_start_fails(disk), disk)
        after = _files(disk)  # what was there is untouched, the database above all
        assert {name: after.get(name) for name in before} == before
        assert set(after) - set(before) <= {"safeboard.db-wal", "safeboard.db-shm"}
        _assert_says_disk_full(_start_fails(fresh), fresh)
        assert set(_files(fresh)) == {"safeboard.toml"}
        # Room for the secrets and the first pages of a database, not for its schema: the
        # start made half a database (and secrets.toml, server.sock), and left them.
        filler = disk / "filler"
        os.truncate(filler, filler.stat().st_size - (128 << 10))
        _assert_says_disk_full(_start_fails(fresh), fresh)
        assert set(_files(fresh)) == {"safeboard.toml"}
        assert sorted(p.name for p in fresh.iterdir()) == ["safeboard.toml", "server.lock"]
        filler.unlink()  # space freed: the next start makes everything and serves
        again = server_factory(name="srv/fresh")
        with again.client() as client:
            assert client.get("/healthz").status_code == 200
            headers = _headers(fresh)
            url = _metrics_url(client, headers)
            assert client.post(url, content=_batch(), headers=PACKED | headers).status_code == 200


def _files(data_dir: Path) -> dict[str, str]:
    """SHA-256 of each file under ``data_dir`` by relative path, but for the lock file
    (whose record each start rewrites) and the tmpfs's filler."""
    return {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and path.name not in ("server.lock", "filler")
    }


def test_a_full_artifact_store_is_503_disk_full_and_healthz_names_it(
    server_factory: Start, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "artifacts", "4m") as disk:
        _settings(
            tmp_path / "srv",
            f'[server]\nmin_free_disk_bytes = 1048576\n[artifacts]\npath = "{disk}"\n',
        )
        server = server_factory()
        headers = _headers(server.data_dir)
        with server.client() as client:
            run_id = _metrics_url(client, headers).split("/")[4]
            fill(disk)
            body = os.urandom(1 << 20)
            declared = client.post(
                f"/api/v1/runs/{run_id}/artifacts",
                json={"name": "model.bin", "size": len(body),
                      "sha256": hashlib.sha256(body).hexdigest()},
                headers=headers,
            )  # fmt: skip
            assert declared.status_code == 201, declared.text
            began = time.monotonic()
            upload = client.put(
                f"/api/v1/artifacts/{declared.json()['id']}/content",
                content=body,
                headers=headers | UPLOAD,
            )
            _assert_503(upload, "disk_full", "30")
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json() == {
                "status": "degraded", "database": "ok", "disk": "ok", "artifact_disk": "full"
            }  # fmt: skip
            _assert_logged_once_per_interval(server, "disk full", time.monotonic() - began)
            (disk / "filler").unlink()
            assert client.get("/healthz").status_code == 200
            resumed = client.put(
                f"/api/v1/artifacts/{declared.json()['id']}/content",
                content=body,
                headers=headers | UPLOAD,
            )
            assert resumed.status_code in (200, 409), resumed.text
