"""Nothing breaks when the server restarts (issue 11): a training script that uses the
discovery file runs across a restart (SIGINT or SIGKILL) and finishes its run by itself,
every point stored once; and one server per data directory (``server.lock``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import cli_env, free_port, run_cli
from tests.e2e.test_sdk import Start, discovery_key, sdk_env

pytestmark = pytest.mark.e2e

STEPS = 1_000  # x 3 keys = 3,000 points, logged over about 5 seconds

TRAIN = textwrap.dedent(
    f"""
    import sys, time
    import safeboard

    run = safeboard.init(project="restart", name="across", flush_interval=0.1)
    for step in range({STEPS}):
        run.log({{"loss": 1.0 / (step + 1), "acc": step / {STEPS}, "lr": 0.1}}, step=step)
        if step == {STEPS} // 2:
            run.log_artifact(sys.argv[1], "weights.bin", "model")
        time.sleep(0.005)
    run.finish()
    print(run.id)
    """
)


def across_a_restart(
    server_factory: Start, tmp_path: Path, stop: signal.Signals, *, revoke: bool = False
) -> None:
    """``revoke``: the discovery key is revoked while the server is down, so the next start
    writes a new one; the script must pick it up from the discovery file by itself."""
    port = free_port()
    first = server_factory(name="srv", port=port)
    key = discovery_key(first)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(200_000))
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = sdk_env(first, tmp_path)  # no URL, no key: the discovery file
    training = subprocess.Popen(
        [sys.executable, str(script), str(weights)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # the run exists and points are flowing
    assert training.poll() is None
    first.process.send_signal(stop)
    first.process.wait(timeout=30)
    if revoke:
        key_id = key.removeprefix("sb_").split("_")[0]
        revoked = run_cli("key", "revoke", key_id, data_dir=first.data_dir)
        assert revoked.returncode == 0, revoked.stderr
    second = server_factory(name="srv", port=port)
    out, err = training.communicate(timeout=120)
    assert training.returncode == 0, err
    assert "safeboard sync" not in err, err  # nothing left behind for the user to send
    run_id = out.strip()
    headers = {"Authorization": f"Bearer {discovery_key(second)}"}
    with second.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        counts = {m["key"]: m["count"] for m in run["metrics"]}
        assert counts == {"loss": STEPS, "acc": STEPS, "lr": STEPS}, (counts, err[-3000:])
        points = client.get(f"/api/v1/runs/{run_id}/points?metric=loss", headers=headers)
        assert points.json()["steps"] == list(range(STEPS))  # each step once, none missing
        (item,) = client.get(f"/api/v1/runs/{run_id}/artifacts", headers=headers).json()["items"]
        assert (item["name"], item["state"]) == ("weights.bin", "ready")
        body = client.get(f"/api/v1/artifacts/{item['id']}/content", headers=headers)
        assert body.content == weights.read_bytes()
    assert run["status"] == "finished"
    # The key of the first start still works, unless it was revoked: then a new one.
    assert (discovery_key(second) == key) is not revoke
    assert not (tmp_path / "spool" / run_id).exists()


def test_a_run_goes_on_across_a_restart_with_sigint(server_factory: Start, tmp_path: Path) -> None:
    across_a_restart(server_factory, tmp_path, signal.SIGINT)


def test_a_run_goes_on_across_a_restart_after_sigkill(
    server_factory: Start, tmp_path: Path
) -> None:
    across_a_restart(server_factory, tmp_path, signal.SIGKILL)


def test_a_run_picks_up_the_new_discovery_key_after_its_key_was_revoked(
    server_factory: Start, tmp_path: Path
) -> None:
    across_a_restart(server_factory, tmp_path, signal.SIGINT, revoke=True)


def start_another(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safeboard", "server", "--port", str(free_port())],
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_second_server_on_one_data_directory_is_refused_by_name(
    server_factory: Start,
) -> None:
    first = server_factory(name="srv")
    discovery = (first.data_dir / "discovery.json").read_text()
    secrets = (first.data_dir / "secrets.toml").read_bytes()
    other = start_another(first.data_dir)
    assert other.returncode != 0
    (line,) = other.stderr.strip().splitlines()  # one line, no traceback
    assert "another safeboard server is running with this data directory" in line
    assert f"pid {first.process.pid}" in line
    assert first.url in line
    assert "since " in line
    assert "--data-dir" in line
    # The first keeps serving, and nothing in its directory was touched.
    with first.client() as client:
        assert client.get("/healthz").status_code == 200
    assert (first.data_dir / "discovery.json").read_text() == discovery
    assert json.loads(discovery)["url"] == first.url
    assert (first.data_dir / "secrets.toml").read_bytes() == secrets
    assert (first.data_dir / "server.sock").is_socket()
    # A crash leaves the lock file, but no lock: the next start proceeds.
    first.process.kill()
    first.process.wait()
    assert (first.data_dir / "server.lock").exists()
    again = server_factory(name="srv")
    with again.client() as client:
        assert client.get("/healthz").status_code == 200
    assert json.loads((again.data_dir / "discovery.json").read_text())["url"] == again.url
    lock = json.loads((again.data_dir / "server.lock").read_text())
    assert (lock["pid"], lock["url"]) == (again.process.pid, again.url)
