"""The SDK from a real training script against a real server: zero configuration through
the discovery file, TLS, offline runs and `safeboard sync`, a server away for the first
half of a run (R2), and the run seen from the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from safeboard.sdk.run import Run
from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]

TRAIN = textwrap.dedent(
    """
    import math, sys, time
    import safeboard

    run = safeboard.init(project="mnist", name="baseline", config={"lr": 0.01, "layers": [64, 32]},
                         tags={"model": "mlp"})
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    for step in range(steps):
        odd = math.nan if step == 3 else 0.0
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps, "odd": odd}, step=step)
        if pause:
            time.sleep(pause)
    run.finish()
    print(run.id)
    """
)


def train(
    tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def sdk_env(server: ServerProcess, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cli_env(server.data_dir)  # the discovery file of the same OS user
    env["SAFEBOARD_SPOOL_DIR"] = str(tmp_path / "spool")
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    env.update(extra)
    return env


def discovery_key(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def check_run(server: ServerProcess, run_id: str, steps: int, key: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {key or discovery_key(server)}"}
    with server.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        assert run["status"] == "finished", run
        assert run["config"] == {"lr": 0.01, "layers": [64, 32]}
        assert run["tags"] == {"model": "mlp"}
        assert run["system"]["python"]
        counts = {m["key"]: m["count"] for m in run["metrics"]}
        assert counts == {"loss": steps, "acc": steps, "odd": steps}  # every point, once
        points = client.get(f"/api/v1/runs/{run_id}/points?metric=loss", headers=headers).json()
        assert points["steps"] == list(range(steps))
        assert points["values"][:2] == [1.0, 0.5]
        odd = client.get(f"/api/v1/runs/{run_id}/points?metric=odd", headers=headers).json()
        assert odd["values"][3] == "NaN"


def test_zero_configuration_run_over_plain_loopback(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    result = train(tmp_path, sdk_env(server, tmp_path), "1000")
    assert result.returncode == 0, result.stderr
    check_run(server, result.stdout.strip(), 1000)
    assert not any((tmp_path / "spool").iterdir())  # all delivered: nothing left behind


def test_zero_configuration_run_over_tls(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    result = train(tmp_path, sdk_env(server, tmp_path), "500")
    assert result.returncode == 0, result.stderr
    check_run(server, result.stdout.strip(), 500)


def test_offline_run_then_sync(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    env = sdk_env(server, tmp_path, SAFEBOARD_MODE="offline")
    result = train(tmp_path, env, "300")
    assert result.returncode == 0, result.stderr
    assert "safeboard sync" in result.stderr  # it says what is left and how to send it
    run_id = result.stdout.strip()
    synced = run_cli("sync", env=sdk_env(server, tmp_path), timeout=120)
    assert synced.returncode == 0, synced.stderr
    assert "900 points sent, done" in synced.stdout
    check_run(server, run_id, 300)


def server_gone_away(server_factory: Start, tmp_path: Path) -> tuple[int, dict[str, str]]:
    """A server that made a write key and stopped: its port (to start it again there) and
    an SDK environment that knows its URL and the key."""
    port = free_port()
    first = server_factory(name="srv", port=port)
    made = run_cli("key", "create", "--name", "ci", "--scope", "write", data_dir=first.data_dir)
    first.stop()
    env = sdk_env(first, tmp_path, SAFEBOARD_URL=f"http://127.0.0.1:{port}",
                  SAFEBOARD_API_KEY=made.stdout.strip())  # fmt: skip
    return port, env


def test_server_away_for_the_first_half(server_factory: Start, tmp_path: Path) -> None:
    port, env = server_gone_away(server_factory, tmp_path)
    key = env["SAFEBOARD_API_KEY"]
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    started = time.monotonic()
    training = subprocess.Popen(
        [sys.executable, str(script), "400", "0.01"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    time.sleep(2.0)  # about half the run, with nobody listening
    assert training.poll() is None  # training went on without the server
    second = server_factory(name="srv", port=port)
    out, err = training.communicate(timeout=120)
    assert training.returncode == 0, err
    assert time.monotonic() - started < 60
    check_run(second, out.strip(), 400, key=key)


def test_projects_and_runs_are_listed_by_the_cli(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    result = train(tmp_path, sdk_env(server, tmp_path), "50")
    assert result.returncode == 0, result.stderr
    env = sdk_env(server, tmp_path)

    def cli(*args: str) -> str:
        done = run_cli(*args, env={**env, "COLUMNS": "200"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    (run,) = [
        json.loads(line)
        for line in cli("runs", "list", "--project", "mnist", "--json").splitlines()
    ]
    assert run["name"] == "baseline"
    assert run["status"] == "finished"
    assert "config" not in run  # a list holds only what is asked (no empty config shown)
    assert "omitted" not in run
    (chosen,) = [
        json.loads(line)
        for line in cli(
            "runs", "list", "--project", "mnist", "--config", "lr", "--config", "layers", "--json"
        ).splitlines()
    ]
    assert chosen["config"] == {"lr": 0.01, "layers": [64, 32]}
    table = cli("runs", "list", "--project", "mnist", "--config", "lr", "--config", "layers")
    assert re.search(r"baseline\s*│\s*finished\s*│.*│\s*0\.01\s*│\s*\[64, 32\]\s*│", table), table
    (project,) = [json.loads(line) for line in cli("projects", "list", "--json").splitlines()]
    assert (project["name"], project["runs"]) == ("mnist", 1)
    assert project["last_run_at"] == run["created_at"]
    table = cli("projects", "list")
    assert re.search(
        r"mnist\s*│\s*1\s*│\s*" + re.escape(run["created_at"][:16].replace("T", " ")), table
    ), table


TENSORBOARD = textwrap.dedent(
    """
    from safeboard.tensorboard import SummaryWriter

    with SummaryWriter(log_dir="runs/exp1", comment="-lr0.1", project="tb") as writer:
        for step in range(20):
            writer.add_scalar("loss/train", 1.0 / (step + 1), step)
            writer.add_scalars("acc", {"train": step / 20, "val": step / 40}, step)
        writer.add_text("notes", "first try")
        writer.add_hparams({"lr": 0.1, "bs": 32}, {"hparam/score": 0.9})
        writer.run.set_tags(["baseline"])
        print(writer.run.id)
    """
)


def test_tensorboard_writer_is_a_drop_in(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    script = tmp_path / "tb.py"
    script.write_text(TENSORBOARD)
    result = subprocess.run(
        [sys.executable, str(script)],
        env=sdk_env(server, tmp_path),
        cwd=tmp_path,  # its runs/exp1 there, not in the checkout
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with server.client() as client:
        run = client.get(f"/api/v1/runs/{result.stdout.strip()}", headers=headers).json()
    assert run["name"] == "exp1-lr0.1"
    assert run["status"] == "finished"
    assert run["config"] == {
        "hparams": [
            {"name": "0", "hparams": {"lr": 0.1, "bs": 32}, "metrics": {"hparam/score": 0.9}}
        ],
        "_charts": {"acc": ["acc/train", "acc/val"]},
    }
    assert run["tags"] == {"baseline": ""}
    if not hasattr(Run, "log_text"):  # with the text series, the text is there
        assert "first try" in run["notes"]
    counts = {m["key"]: m["count"] for m in run["metrics"]}
    assert counts == {"loss/train": 20, "acc/train": 20, "acc/val": 20, "hparam/score": 1}
