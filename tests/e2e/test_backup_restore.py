"""The restore drill (issue 18, R3): a real server takes metric batches and artifacts while
``safeboard backup`` runs; ``safeboard restore`` puts the archive into an empty data
directory; a server started on it holds every point acknowledged before the backup
began, once, the artifacts byte for byte, and an intact audit log. On SQLite and on
PostgreSQL (pg_dump and pg_restore of the test's PostgreSQL)."""

from __future__ import annotations

import json
import os
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.e2e.conftest import ServerProcess, run_cli, start_server

pytestmark = pytest.mark.e2e

POINTS = 50  # per batch: steps i*POINTS .. i*POINTS+49


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """The server's database and an empty one to restore into (None, None: SQLite)."""
    if request.param == "sqlite":
        yield None, None
        return
    postgres = request.getfixturevalue("postgres_server")
    with fresh_database(postgres, "drill") as used, fresh_database(postgres, "back") as empty:
        yield used, empty


def on_database(tmp_path: Path, name: str, url: str | None) -> None:
    if url is not None:
        (tmp_path / name).mkdir(mode=0o700)
        (tmp_path / name / "safeboard.toml").write_text(f'[database]\nurl = "{url}"\n')


def api(server: ServerProcess) -> httpx.Client:
    key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    client = server.client()
    client.headers["Authorization"] = f"Bearer {key}"
    return client


class Writer(threading.Thread):
    """Posts batches in a loop; records when each was acknowledged."""

    def __init__(self, server: ServerProcess, run_id: str) -> None:
        super().__init__(daemon=True)
        self.server, self.run_id = server, run_id
        self.acked: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with api(self.server) as client:
            batch = 0
            while not self.stop.is_set():
                steps = list(range(batch * POINTS, (batch + 1) * POINTS))
                body = {"batch_id": f"drill-{batch:06d}", "metrics": {"loss": {
                    "steps": steps, "times": [time.time()] * POINTS,
                    "values": [float(s) for s in steps]}}}  # fmt: skip
                answer = client.post(f"/api/v1/runs/{self.run_id}/metrics", json=body)
                if answer.status_code in (200, 201):
                    self.acked.append((batch, time.monotonic()))
                    batch += 1

    def wait_acked(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` batches are acknowledged: the writer's progress, not a fixed
        sleep, so the test waits no longer than the server needs."""
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"{len(self.acked)} of {count} batches acked"
            assert self.is_alive(), "the writer stopped"
            time.sleep(0.02)


def upload(server: ServerProcess, run_id: str, path: Path) -> str:
    done = run_cli("artifacts", "upload", run_id, str(path), data_dir=server.data_dir)
    assert done.returncode == 0, done.stderr
    with api(server) as client:
        listed = client.get(f"/api/v1/runs/{run_id}/artifacts").json()["items"]
    (found,) = [a["id"] for a in listed if a["name"] == path.name]
    return str(found)


def test_a_backup_taken_under_writes_restores_whole(
    tmp_path: Path, databases: tuple[str | None, str | None]
) -> None:
    database, restore_url = databases
    on_database(tmp_path, "srv", database)
    server = start_server(tmp_path, "--tls", name="srv")
    restored: ServerProcess | None = None
    try:
        with api(server) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
            run_id = client.post("/api/v1/projects/ml/runs", json={"name": "a"}).json()["id"]
        files = {}
        for name, size in (("weights.bin", 3 * 1024 * 1024 + 7), ("notes.txt", 10)):
            path = tmp_path / name
            path.write_bytes(os.urandom(size))
            files[upload(server, run_id, path)] = path.read_bytes()
        made = run_cli("key", "create", "--name", "audited", data_dir=server.data_dir)
        assert made.returncode == 0, made.stderr  # one more audit entry

        writer = Writer(server, run_id)
        writer.start()
        writer.wait_acked(3)  # a few batches in before the backup (was a fixed 1 s sleep)
        began = time.monotonic()
        archive = tmp_path / "backup.tar"
        taken = run_cli("backup", str(archive), data_dir=server.data_dir, timeout=120)
        assert taken.returncode == 0, taken.stderr
        writer.wait_acked(len(writer.acked) + 1)  # writes go on after it
        writer.stop.set()
        writer.join(30)
        before = {batch for batch, at in writer.acked if at < began}
        assert len(before) >= 3, "the writer acknowledged too little before the backup"
        assert oct(archive.stat().st_mode & 0o777) == "0o600"
        assert "secrets" in taken.stdout

        args = ["restore", str(archive), "--data-dir", str(tmp_path / "back")]
        if restore_url is not None:
            args += ["--database-url", restore_url]
        put = run_cli(*args, data_dir=tmp_path / "unused", timeout=120)
        assert put.returncode == 0, put.stderr
        assert "audit log intact" in put.stdout

        restored = start_server(tmp_path, "--tls", name="back")
        with api(restored) as client:
            points = client.get(f"/api/v1/runs/{run_id}/points", params={"metric": "loss"})
            assert points.status_code == 200, points.text
            steps = points.json()["steps"]
            for artifact_id, content in files.items():
                got = client.get(f"/api/v1/artifacts/{artifact_id}/content")
                assert got.status_code == 200
                assert got.content == content
        counted = Counter(steps)
        assert max(counted.values()) == 1, "a point restored twice"
        for batch in before:
            assert all(counted[s] == 1 for s in range(batch * POINTS, (batch + 1) * POINTS))
        verified = run_cli("audit", "verify", data_dir=restored.data_dir)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.stop()
        if restored is not None:
            restored.stop()


def test_restore_refuses_a_damaged_archive_and_a_used_directory(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="srv")
    try:
        archive = tmp_path / "backup.tar"
        assert run_cli("backup", str(archive), data_dir=server.data_dir).returncode == 0
    finally:
        server.stop()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    refused = run_cli("restore", str(archive), "--data-dir", str(used), data_dir=used)
    assert refused.returncode != 0
    assert "not empty" in refused.stderr
    assert (used / "keep.txt").read_text() == "mine"
    # One byte of the database changed: its checksum refuses it, and nothing is left.
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as tar:
        member = tar.getmember("database/safeboard.db")
        offset = member.offset_data + 5000
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0xFF
    damaged.write_bytes(bytes(data))
    target = tmp_path / "fresh"
    broken = run_cli("restore", str(damaged), "--data-dir", str(target), data_dir=target)
    assert broken.returncode != 0
    assert "does not match its checksum" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert not target.exists()
    again = run_cli("backup", str(archive), data_dir=tmp_path / "srv")
    assert again.returncode != 0
    assert "exists" in again.stderr
