"""R1: SIGKILL the server in the middle of an SDK upload; after a restart every
acknowledged point is there once and the SDK delivers the rest."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
STEPS = 80_000  # x 3 keys = 240,000 points

UPLOAD = textwrap.dedent(
    f"""
    import time
    import safeboard

    run = safeboard.init(project="r1", name="upload", flush_interval=0.05)
    for step in range({STEPS}):
        run.log({{"a": float(step), "b": -float(step), "c": step * 0.5}}, step=step)
        if step % 2000 == 0:
            time.sleep(0.02)  # a training loop: the upload spans the kill
    run.finish(timeout=120)
    print(run.id)
    """
)


def test_kill_minus_nine_mid_upload_loses_and_duplicates_nothing(
    server_factory: Start, tmp_path: Path
) -> None:
    port = free_port()
    first = server_factory(name="srv", port=port)
    key = run_cli("key", "create", "--name", "r1", "--scope", "write", data_dir=first.data_dir)
    token = key.stdout.strip()
    env = cli_env(first.data_dir)
    env.update(
        SAFEBOARD_URL=f"http://127.0.0.1:{port}", SAFEBOARD_API_KEY=token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"), SAFEBOARD_CONFIG_DIR=str(tmp_path / "cfg"),
    )  # fmt: skip
    script = tmp_path / "upload.py"
    script.write_text(UPLOAD)
    upload = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # batches are flowing
    assert upload.poll() is None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    time.sleep(1.0)
    second = server_factory(name="srv", port=port)
    out, err = upload.communicate(timeout=180)
    assert upload.returncode == 0, err
    run_id = out.strip()
    with second.client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        counts = {m["key"]: m["count"] for m in run["metrics"]}
        assert counts == {"a": STEPS, "b": STEPS, "c": STEPS}, (counts, err[-3000:])
        for key in ("a", "b", "c"):
            points = client.get(
                f"/api/v1/runs/{run_id}/points", params={"metric": key}, headers=headers
            ).json()
            assert points["steps"] == list(range(STEPS))  # each step once, none missing
    assert run["status"] == "finished"
