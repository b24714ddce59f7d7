"""An integration inside a task (S14): a child process with only what an agent gives a task
(the URL, the CA certificate, the run id and the task token) runs an Optuna study with
SafeboardOptunaCallback against a real TLS server; every trial logs into the task's one
run (step = the trial's number), which the task's process ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeboard.jobs.queue import Lease
from tests.e2e.conftest import ServerProcess, cli_env, start_server
from tests.e2e.test_task_token_sdk import _key, _submit_and_lease

pytest.importorskip("optuna")

pytestmark = pytest.mark.e2e

STUDY = """
import optuna
from safeboard.integrations.optuna import SafeboardOptunaCallback

optuna.logging.set_verbosity(optuna.logging.ERROR)
callback = SafeboardOptunaCallback("ignored-in-a-task", quiet=True)
study = optuna.create_study(study_name="in-task", sampler=optuna.samplers.RandomSampler(seed=1))
study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) ** 2, n_trials=3, callbacks=[callback])
print(study.best_value)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("integrations-task"), "--tls")
    yield started
    started.stop()


def _child(server: ServerProcess, tmp_path: Path, lease: Lease) -> subprocess.CompletedProcess[str]:
    env = cli_env(tmp_path / "no-server-here")  # no discovery file, no SAFEBOARD_API_KEY
    env.update(
        SAFEBOARD_URL=server.url,
        SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_RUN_ID=lease.run_id,
        SAFEBOARD_TASK_TOKEN=lease.task_token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "config"),
    )
    return subprocess.run(
        [sys.executable, "-c", STUDY], env=env, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip


def test_an_optuna_study_inside_a_task_logs_into_the_tasks_run(
    server: ServerProcess, tmp_path: Path
) -> None:
    task, lease, queue = _submit_and_lease(server)
    done = _child(server, tmp_path, lease)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    best = float(done.stdout.strip().splitlines()[-1])
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        run = client.get(f"/api/v1/runs/{task['run_id']}").json()
        values = client.get(
            f"/api/v1/runs/{task['run_id']}/points", params={"metric": "value"}
        ).json()
        projects = client.get("/api/v1/projects").json()
    assert run["status"] == "finished", run
    assert {m["key"]: m["count"] for m in run["metrics"]} == {
        "value": 3, "param/x": 3, "best_value": 3,
    }  # fmt: skip
    assert values["steps"] == [0, 1, 2]
    assert {m["key"]: m["last_value"] for m in run["metrics"]}["best_value"] == pytest.approx(best)
    # No run of its own per trial, and no project named in the script.
    assert "ignored-in-a-task" not in str(projects)
    queue.engine.dispose()
