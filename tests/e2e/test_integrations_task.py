"""An integration inside a task (S14): a child process with only what an agent gives a task
(the URL, the CA certificate, the run id and the task token) runs an Optuna study with
SafeboardOptunaCallback against a real TLS server; every trial logs into the task's one
run (step = the trial's number), which the task's process ends. A second child fits a
Keras model (JAX backend) with its SafeboardCallback after the script's own init(), then
runs a study in the same process: all log into the task's one run, which the callback
leaves open."""

from __future__ import annotations

import importlib.util
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


KERAS = """
import numpy as np
import keras
import optuna
import safeboard
from safeboard.integrations.keras import SafeboardCallback
from safeboard.integrations.optuna import SafeboardOptunaCallback

run = safeboard.init(config={"script": 1})  # the script's own, first
keras.utils.set_random_seed(7)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
rng = np.random.default_rng(0)
x, y = rng.random((16, 4), dtype=np.float32), rng.random((16, 1), dtype=np.float32)
callback = SafeboardCallback("ignored-in-a-task", name="ignored-name", quiet=True)
model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
assert callback.run is run  # the run this process holds: no second init()
run.log({"after": 1.0}, step=2)  # still open: the task's process ends it
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2,
               callbacks=[SafeboardOptunaCallback("ignored-too", quiet=True)])
print(run.id)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("integrations-task"), "--tls")
    yield started
    started.stop()


def _child(
    server: ServerProcess, tmp_path: Path, lease: Lease, script: str = STUDY
) -> subprocess.CompletedProcess[str]:
    env = cli_env(tmp_path / "no-server-here")  # no discovery file, no SAFEBOARD_API_KEY
    env.update(
        SAFEBOARD_URL=server.url,
        SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_RUN_ID=lease.run_id,
        SAFEBOARD_TASK_TOKEN=lease.task_token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "config"),
        KERAS_BACKEND="jax",
    )
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
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


def test_keras_inside_a_task_logs_into_the_tasks_run(server: ServerProcess, tmp_path: Path) -> None:
    if not all(importlib.util.find_spec(name) for name in ("keras", "jax")):
        pytest.skip("the keras extra is not installed")  # imported in the child alone
    task, lease, queue = _submit_and_lease(server)
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        named = client.get(f"/api/v1/runs/{task['run_id']}").json()["name"]
    done = _child(server, tmp_path, lease, KERAS)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip().splitlines()[-1] == task["run_id"]
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        run = client.get(f"/api/v1/runs/{task['run_id']}").json()
        losses = client.get(
            f"/api/v1/runs/{task['run_id']}/points", params={"metric": "loss"}
        ).json()
        projects = client.get("/api/v1/projects").json()
        runs = client.get("/api/v1/projects/ml/runs").json()
    assert run["status"] == "finished", run
    assert run["name"] == named
    counts = {m["key"]: m["count"] for m in run["metrics"]}
    assert counts["loss"] == 2  # one point per epoch
    assert counts["after"] == 1  # logged after fit(): the callback left the run open
    assert counts["value"] == counts["param/x"] == 2  # the study, in the same process
    assert losses["steps"] == [0, 1]
    assert run["config"]["keras"]["epochs"] == 2
    assert run["config"]["script"] == 1
    assert "ignored" not in str(projects)
    assert "ignored-name" not in str(runs)
    queue.engine.dispose()
