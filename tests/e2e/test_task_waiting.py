"""``safeboard task submit`` when no enrolled agent could ever take the task: the task is
queued, and the CLI says on stderr why it waits and how to add an agent; ``task show``
says it too (jobs/waiting.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import cli_env, run_cli, start_server

pytestmark = pytest.mark.e2e


def test_a_submit_no_agent_could_take_says_so(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        env = cli_env(server.data_dir)
        assert run_cli("projects", "create", "ml", env=env).returncode == 0
        made = run_cli("task", "submit", "--project", "ml", "--gpus", "1", "--no-code", "--",
                       "python", "train.py", env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr
        found = re.fullmatch(r"task (\d+) queued in ml \(run [0-9a-f]{32}\)\n", made.stdout)
        assert found, made.stdout
        task_id = found.group(1)
        assert made.stderr == (
            f"task {task_id} waits: no agent is enrolled: it runs when one joins; an admin "
            "adds one with `safeboard agent token` (then `safeboard agent join` on it)\n"
        )
        shown = run_cli("task", "show", task_id, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "waiting: no agent is enrolled" in shown.stdout, shown.stdout
        as_json = json.loads(run_cli("task", "show", task_id, "--json", env=env).stdout)
        assert as_json["state"] == "queued"
        assert as_json["waiting_reason"].startswith("no agent is enrolled")
    finally:
        server.stop()
