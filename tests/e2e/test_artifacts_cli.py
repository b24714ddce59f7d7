"""`safeboard artifacts` as a user runs it, against a real server over TLS: upload with a
progress bar, list, download byte-identical, remove; and resume for real: the CLI is
killed (SIGKILL) in the middle of an upload and of a download, and the same command run
again carries on from the server's offset, or from the ``.part`` file, not from 0. The
resume test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
MB = 1_000_000


def key_of(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def api(server: ServerProcess) -> httpx.Client:
    client = server.client()
    client.headers["Authorization"] = f"Bearer {key_of(server)}"
    return client


def make_run(server: ServerProcess) -> str:
    with api(server) as client:
        client.post("/api/v1/projects", json={"name": "files"})
        made = client.post("/api/v1/projects/files/runs", json={"name": "r"})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_file(path: Path, size: int) -> Path:
    """Random bytes, so that any misplaced byte changes the SHA-256."""
    with path.open("wb") as handle:
        left = size
        while left:
            block = min(left, 8 << 20)
            handle.write(os.urandom(block))
            left -= block
    return path


def cli(server: ServerProcess, *args: str, cwd: Path | None = None, tty: bool = False,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = cli_env(server.data_dir)
    if tty:  # what a person at a terminal sees: the live progress bars
        env.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "safeboard", "artifacts", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_upload_list_download_remove(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    run_id = make_run(server)
    source = write_file(tmp_path / "weights.bin", 5 * MB)

    uploaded = cli(server, "upload", run_id, str(source), "--kind", "model", tty=True)
    assert uploaded.returncode == 0, uploaded.stderr
    assert "uploading weights.bin" in uploaded.stderr  # the bar: label, bytes, rate, time left
    assert "5.0 MB / 5.0 MB" in uploaded.stderr  # safeboard.sizes, as in every table
    assert "MB/s" in uploaded.stderr
    assert f"sha256 {sha256(source)}" in uploaded.stdout

    listed = cli(server, "list", run_id, "--json")
    assert listed.returncode == 0, listed.stderr
    (item,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (item["name"], item["kind"], item["size"], item["state"]) == (
        "weights.bin", "model", 5 * MB, "ready",
    )  # fmt: skip
    table = cli(server, "list", run_id)
    assert item["id"] in table.stdout  # the whole id, to copy into the next command
    assert "weights.bin" in table.stdout

    again = cli(server, "upload", run_id, str(source), "--kind", "model")
    assert again.returncode == 0, again.stderr
    assert "already on the server" in again.stdout
    assert item["id"] in again.stdout  # the same artifact, not a second copy

    out = tmp_path / "out"
    out.mkdir()
    got = cli(server, "download", item["id"], "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert sha256(out / "weights.bin") == sha256(source)
    assert not list(out.glob("*.part"))

    (out / "weights.bin").write_bytes(b"mine")
    refused = cli(server, "download", item["id"], "-o", str(out / "weights.bin"))
    assert refused.returncode == 2
    said = f"{out / 'weights.bin'} exists: choose another path, or overwrite it (--force)"
    assert refused.stderr.strip().splitlines() == [f"safeboard: error: {said}"]
    assert (out / "weights.bin").read_bytes() == b"mine"
    forced = cli(server, "download", item["id"], "-o", str(out / "weights.bin"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert sha256(out / "weights.bin") == sha256(source)

    unasked = cli(server, "rm", item["id"])
    assert unasked.returncode != 0
    assert "--yes" in unasked.stderr
    removed = cli(server, "rm", item["id"], "--yes")
    assert removed.returncode == 0, removed.stderr
    assert cli(server, "list", run_id, "--json").stdout == ""
    gone = cli(server, "download", item["id"], "-o", str(tmp_path / "x"))
    assert gone.returncode == 2
    assert gone.stderr.startswith("safeboard: error: no such artifact")
    for result in (uploaded, listed, again, got, refused, unasked, removed, gone):
        no_traceback(result)


def test_list_follows_every_page(server_factory: Start) -> None:
    """More artifacts than one page of the API (1,000): the CLI lists them all, in order."""
    server = server_factory()
    run_id = make_run(server)
    empty = hashlib.sha256(b"").hexdigest()
    with api(server) as client:
        for i in range(1003):
            made = client.post(f"/api/v1/runs/{run_id}/artifacts",
                               json={"name": f"n{i:04}", "size": 0, "sha256": empty})  # fmt: skip
            assert made.status_code == 201, made.text
    listed = cli(server, "list", run_id, "--json")
    assert listed.returncode == 0, listed.stderr
    names = [json.loads(line)["name"] for line in listed.stdout.splitlines()]
    assert names == [f"n{i:04}" for i in range(1003)]


def test_clear_errors_for_a_missing_file_and_an_unknown_run(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory()
    missing = cli(server, "upload", make_run(server), str(tmp_path / "nope.bin"))
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("nope.bin: no such file")
    source = write_file(tmp_path / "a.bin", 1000)
    unknown = cli(server, "upload", "0" * 32, str(source))
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == "safeboard: error: no such run"
    no_traceback(missing)
    no_traceback(unknown)


def test_download_never_writes_through_a_planted_part_link(
    server_factory: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, item 8: a ``.part`` planted as a symbolic link to (a stand-in for)
    ``~/.bashrc``, or as a hard link to it, stops both the CLI and the SDK with one clear
    error; the file is unchanged. Once the planted name is gone, the download works."""
    import safeboard
    from safeboard.client.downloads import UnsafeDownloadPath

    server = server_factory("--tls")
    run_id = make_run(server)
    source = write_file(tmp_path / "weights.bin", 2 * MB)
    assert cli(server, "upload", run_id, str(source)).returncode == 0
    (item,) = [
        json.loads(line) for line in cli(server, "list", run_id, "--json").stdout.splitlines()
    ]
    bashrc = tmp_path / "home" / ".bashrc"
    bashrc.parent.mkdir()
    bashrc.write_bytes(b"export PATH=$HOME/bin:$PATH\n")
    out = tmp_path / "out"
    out.mkdir()
    part = out / "weights.bin.part"

    part.symlink_to(bashrc)
    refused = cli(server, "download", item["id"], "-o", str(out))
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"safeboard: error: {part} is a symbolic link;")
    assert f"rm {part}" in line
    no_traceback(refused)

    monkeypatch.setenv("SAFEBOARD_DATA_DIR", str(server.data_dir))
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("SAFEBOARD_URL", "SAFEBOARD_API_KEY", "SAFEBOARD_CA_CERT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UnsafeDownloadPath, match="symbolic link"):
        safeboard.download_artifact(item["id"], out)
    part.unlink()
    os.link(bashrc, part)
    with pytest.raises(UnsafeDownloadPath, match="hard links"):
        safeboard.download_artifact(item["id"], out)
    assert bashrc.read_bytes() == b"export PATH=$HOME/bin:$PATH\n"
    assert not (out / "weights.bin").exists()

    part.unlink()
    assert safeboard.download_artifact(item["id"], out) == out / "weights.bin"
    assert sha256(out / "weights.bin") == sha256(source)
    assert bashrc.read_bytes() == b"export PATH=$HOME/bin:$PATH\n"


def _popen(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "safeboard", "artifacts", *args], env=cli_env(server.data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _kill_when(process: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def _uploading(server: ServerProcess, run_id: str) -> dict[str, object] | None:
    with api(server) as client:
        items = client.get(f"/api/v1/runs/{run_id}/artifacts").json()["items"]
    return items[0] if items else None


def resume_both_ways(server: ServerProcess, tmp_path: Path) -> None:
    size = 400 * MB
    source = write_file(tmp_path / "model.ckpt", size)
    run_id = make_run(server)

    # Upload, killed midway: the server keeps what arrived.
    upload = _popen(server, "upload", run_id, str(source))
    seen: dict[str, object] = {}

    def upload_underway() -> bool:
        item = _uploading(server, run_id)
        if item is not None and int(str(item["received"])) > 40 * MB:
            seen.update(item)
            return True
        return False

    _kill_when(upload, upload_underway)
    time.sleep(1.0)  # the server notices the connection is gone and keeps what it got
    held = _uploading(server, run_id)
    assert held is not None
    assert held["state"] == "uploading"
    stored = int(str(held["received"]))
    assert 40 * MB < stored < size

    resumed = cli(server, "upload", run_id, str(source))
    assert resumed.returncode == 0, resumed.stderr
    no_traceback(resumed)
    resumed_at = next(
        float(part.split(" MB")[0]) for part in resumed.stdout.split("resumed at ")[1:]
    )
    assert resumed_at * MB >= stored - 0.1 * MB  # from the server's offset, not from 0
    assert f"artifact {seen['id']}" in resumed.stdout  # the artifact begun before
    artifact_id = str(seen["id"])
    with api(server) as client:
        final = client.get(f"/api/v1/artifacts/{artifact_id}").json()
    assert (final["state"], final["size"], final["sha256"]) == ("ready", size, sha256(source))

    # Download, killed midway: the .part file stays, and the rest is asked for.
    dest = tmp_path / "copy.ckpt"
    part = tmp_path / "copy.ckpt.part"
    download = _popen(server, "download", artifact_id, "-o", str(dest))
    _kill_when(download, lambda: part.exists() and part.stat().st_size > 40 * MB)
    kept = part.stat().st_size
    assert kept < size
    assert not dest.exists()
    finished = cli(server, "download", artifact_id, "-o", str(dest))
    assert finished.returncode == 0, finished.stderr
    no_traceback(finished)
    assert sha256(dest) == sha256(source)
    assert not part.exists()
    audit = run_cli("audit", "list", "--json", data_dir=server.data_dir)
    ranges = [json.loads(line)["detail"].get("range") for line in audit.stdout.splitlines()
              if json.loads(line)["action"] == "artifact.downloaded"]  # fmt: skip
    assert f"{kept}-{size - 1}" in ranges  # only the missing bytes were sent again


# The test reads which bytes went again from the audit log, so every download request gets
# its entry (by default repeats within a minute are one entry, S16).
EVERY_DOWNLOAD = "[artifacts]\ndownload_audit_seconds = 0\n"


def test_upload_and_download_resume_after_a_kill(server_factory: Start, tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(EVERY_DOWNLOAD)
    resume_both_ways(server_factory("--tls"), tmp_path)


@pytest.mark.postgres
def test_resume_on_postgresql(server_factory: Start, pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n' + EVERY_DOWNLOAD)
    server = server_factory("--tls")
    assert "postgresql+psycopg://" in "\n".join(server.banner)
    resume_both_ways(server, tmp_path)
