"""``safeboard task ...`` as a subprocess against a real server over TLS: submit (with
--no-code; code over the server's limit: exit 2 naming the biggest files), list, show,
cancel, retry, and errors as one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    limit = {"SAFEBOARD__JOBS__MAX_CODE_BYTES": str(CODE_LIMIT)}
    started = start_server(tmp_path_factory.mktemp("task-cli"), "--tls", settings=limit)
    key = json.loads((started.data_dir / "discovery.json").read_text())["api_key"]
    with started.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


CODE_LIMIT = 64 * 1024


def cli(server: ServerProcess, *args: str, code: int = 0) -> Any:
    done = run_cli(*args, env={**cli_env(server.data_dir), "COLUMNS": "200"})
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


def test_submit_list_show_cancel_retry(server: ServerProcess) -> None:
    assert server.tls
    made = cli(server, "task", "submit", "--project", "ml", "--gpus", "1", "--label", "a100",
               "--priority", "5", "--max-duration", "1h30m", "--env", "LR=0.1", "--no-code",
               "--", "python", "train.py", "--lr", "0.1").stdout  # fmt: skip
    found = re.fullmatch(r"task (\d+) queued in ml \(run ([0-9a-f]{32})\)\n", made)
    assert found, made
    task_id, run_id = found.group(1), found.group(2)

    listed = cli(server, "task", "list", "--project", "ml").stdout
    assert task_id in listed
    assert "queued" in listed
    assert "python train.py --lr 0.1" in listed
    queued = cli(server, "task", "list", "--state", "queued", "--json").stdout
    rows = [json.loads(line) for line in queued.splitlines()]
    assert [(r["id"], r["run_id"], r["max_seconds"]) for r in rows] == [
        (int(task_id), run_id, 5400)
    ]
    assert cli(server, "task", "list", "--state", "running").stderr.strip() == "no tasks"

    shown = cli(server, "task", "show", task_id)
    assert f"task {task_id} in ml: queued" in shown.stdout
    assert "command: python train.py --lr 0.1" in shown.stdout
    assert "env: LR" in shown.stdout
    assert "0.1\n" not in shown.stdout.split("env:")[1]
    assert "no attempts yet" in shown.stderr
    assert json.loads(cli(server, "task", "show", task_id, "--json").stdout)["env"] == {"LR": "0.1"}
    with_params = cli(server, "task", "submit", "--project", "ml", "--no-code",
                      "--param", "lr=0.5", "--param", "optim.name=adam", "--param", 'tag="7"',
                      "--param", "layers=[64, 32]", "--", "python", "train.py").stdout  # fmt: skip
    made_id = with_params.split()[1]
    params = json.loads(cli(server, "task", "show", made_id, "--json").stdout)["params"]
    assert params == {"lr": 0.5, "optim": {"name": "adam"}, "tag": "7", "layers": [64, 32]}
    cli(server, "task", "cancel", made_id)
    assert cli(server, "runs", "show", run_id).stdout.startswith(
        f"task-{task_id} ({run_id}) in ml: queued"
    )

    assert cli(server, "task", "cancel", task_id).stdout == f"task {task_id}: cancelled\n"
    assert "cancel requested by:" in cli(server, "task", "show", task_id).stdout
    retried = cli(server, "task", "retry", task_id).stdout
    expected = rf"task \d+ queued in ml \(run [0-9a-f]{{32}}\), a retry of task {task_id}\n"
    assert re.fullmatch(expected, retried), retried


def test_code_over_the_limit_is_refused_before_it_is_sent(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "weights.bin").write_bytes(os.urandom(3 * CODE_LIMIT))
    (tmp_path / "small.npy").write_bytes(os.urandom(CODE_LIMIT // 2))
    done = subprocess.run(
        [sys.executable, "-m", "safeboard", "task", "submit", "--project", "ml", "--", "python",
         "train.py"], env=cli_env(server.data_dir), cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "over" in done.stderr or "more than" in done.stderr
    assert "weights.bin (196.6 KB)" in done.stderr, done.stderr
    assert ".safeboardignore" in done.stderr
    assert "--no-code" in done.stderr
    assert "Traceback" not in done.stderr
    stored = [p for p in (server.data_dir / "artifacts").rglob("*") if p.is_file()]
    assert stored == []
    (tmp_path / ".safeboardignore").write_text("*.bin\n")  # the fix the message gives
    fixed = subprocess.run(
        [sys.executable, "-m", "safeboard", "task", "submit", "--project", "ml", "--code",
         str(tmp_path), "--", "python", "train.py"], env=cli_env(server.data_dir),
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert "code: 3 files" in fixed.stderr


def test_refusals_are_one_line(server: ServerProcess) -> None:
    both = cli(server, "task", "submit", "--project", "ml", "--code", ".", "--no-code", "--",
               "true", code=2)  # fmt: skip
    assert "--code and --no-code" in both.stderr
    nowhere_dir = cli(server, "task", "submit", "--project", "ml", "--code", "/no/such/dir",
                      "--", "true", code=2)  # fmt: skip
    assert "not a directory" in nowhere_dir.stderr
    assert "Traceback" not in nowhere_dir.stderr
    missing = cli(server, "task", "show", "987654", code=2)
    assert missing.stderr.strip() == "safeboard: error: no task 987654"
    for param in ("novalue", "a..b=1", "lr=1"):
        twice = ("--param", "lr=2") if param == "lr=1" else ()
        refused = cli(server, "task", "submit", "--project", "ml", "--param", param, *twice,
                      "--no-code", "--", "true", code=2)  # fmt: skip
        assert "--param" in refused.stderr
        assert "Traceback" not in refused.stderr
    bad = cli(server, "task", "submit", "--project", "ml", "--env", "1X=2", "--no-code", "--",
              "true", code=2)  # fmt: skip
    assert "not a variable name" in bad.stderr
    assert bad.stderr.count("\n") == 1
    nowhere = cli(server, "task", "submit", "--project", "nope", "--no-code", "--", "true", code=2)
    assert "no such project" in nowhere.stderr
    duration = cli(server, "task", "submit", "--project", "ml", "--max-duration", "2 weeks",
                   "--no-code", "--", "true", code=2)  # fmt: skip
    assert "a duration such as" in duration.stderr


def test_a_new_user_creates_the_project_the_task_needs(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The issue's user story submits to `--project mnist` on a fresh server: the refusal
    names the project and the command that creates it, and that command exists."""
    code = tmp_path / "proj"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    for where in (["--code", str(code)], ["--no-code"]):
        refused = cli(server, "task", "submit", "--project", "mnist", *where, "--", "true", code=2)
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "'mnist' is not a project you can see on https://" in refused.stderr
        assert "safeboard projects create mnist" in refused.stderr
    made = cli(server, "projects", "create", "mnist", "--description", "digits")
    assert made.stdout == "project mnist created; you are its owner\n"
    again = cli(server, "projects", "create", "mnist", code=2)
    assert again.stderr.count("\n") == 1, again.stderr
    assert "Traceback" not in again.stderr
    listed = json.loads(cli(server, "projects", "list", "--json").stdout.splitlines()[-1])
    assert (listed["name"], listed["description"]) == ("mnist", "digits")
    queued = cli(server, "task", "submit", "--project", "mnist", "--code", str(code), "--", "true")
    assert queued.stdout.startswith("task ")
    # Renamed: the old name's refusal says where the project is now, and never advises
    # creating a project under the old name (which would take its links from the renamed).
    cli(server, "projects", "rename", "mnist", "mnist-v2")
    moved = cli(server, "task", "submit", "--project", "mnist", "--no-code", "--", "true", code=2)
    assert moved.stderr.count("\n") == 1, moved.stderr
    assert "'mnist' is now called 'mnist-v2'" in moved.stderr
    assert "projects create" not in moved.stderr
