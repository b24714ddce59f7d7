"""The PyTorch integrations inside a task (S14): a child process with only what an agent
gives a task (the URL, the CA certificate, the run id and the task token) fits with
Lightning, tests, logs through an Accelerate tracker, trains with a Hugging Face Trainer
and logs again after all of them ended their parts; everything lands in the task's one
run, which the task's process ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, start_server
from tests.e2e.test_task_token_sdk import _key, _submit_and_lease
from tests.frameworks.test_transformers import STEPS

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import lightning.pytorch as pl
from accelerate import Accelerator
from safeboard.integrations.accelerate import SafeboardTracker
from safeboard.integrations.lightning import SafeboardLogger
from safeboard.integrations.transformers import SafeboardCallback
from tests.frameworks.test_lightning import data, module_class
from tests.frameworks.test_transformers import arguments, dataset, tiny_bert
from transformers import Trainer

logger = SafeboardLogger(project="ignored-in-a-task", log_model=True)
trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, accelerator="cpu",
                     enable_progress_bar=False, default_root_dir=sys.argv[1])
model = module_class("lightning.pytorch")(optim={"lr": 0.1})
trainer.fit(model, data())
trainer.test(model, data())
accelerator = Accelerator(cpu=True, log_with=[SafeboardTracker("ignored-too")])
accelerator.init_trackers("ignored-too", config={"tracker": "accelerate"})
accelerator.log({"acc_loss": 0.5}, step=100)
accelerator.end_training()
callback = SafeboardCallback(project="ignored-hf")  # and run_name="bert-tiny": ignored too
args = arguments(__import__("pathlib").Path(sys.argv[1]))
Trainer(model=tiny_bert(), args=args, train_dataset=dataset(), callbacks=[callback]).train()
assert callback.run is logger.experiment  # the task's run, held by this process, left open
logger.experiment.log({"after": 1.0}, step=101)  # the run is still open
print(logger.version)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("frameworks-task"), "--tls")
    yield started
    started.stop()


def test_the_integrations_log_into_the_tasks_run(server: ServerProcess, tmp_path: Path) -> None:
    task, lease, _ = _submit_and_lease(server)
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        named = client.get(f"/api/v1/runs/{task['run_id']}").json()["name"]
    env = cli_env(tmp_path / "no-server-here")  # no discovery file, no SAFEBOARD_API_KEY
    env.update(
        SAFEBOARD_URL=server.url, SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_RUN_ID=lease.run_id, SAFEBOARD_TASK_TOKEN=lease.task_token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"), SAFEBOARD_CONFIG_DIR=str(tmp_path / "c"),
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), HF_HUB_OFFLINE="1",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
        text=True, timeout=300, check=False, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == task["run_id"]
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        run = client.get(f"/api/v1/runs/{task['run_id']}").json()
        artifacts = client.get(f"/api/v1/runs/{task['run_id']}/artifacts").json()["items"]
        projects = client.get("/api/v1/projects").json()
    assert run["status"] == "finished", run
    counts = {m["key"]: m["count"] for m in run["metrics"]}
    assert counts["train_loss"] == 4 + 1  # Lightning's 4 steps, and the Trainer's summary
    assert counts["test_loss"] == 1
    assert counts["acc_loss"] == counts["after"] == 1
    assert counts["loss"] == STEPS  # the Trainer's, at its global steps
    assert counts["train_runtime"] == 1
    assert run["config"]["optim/lr"] == 0.1
    assert run["config"]["tracker"] == "accelerate"
    assert run["config"]["max_steps"] == STEPS  # the Trainer's arguments
    assert run["config"]["model/model_type"] == "bert"
    assert run["name"] == named  # not the Trainer's run_name
    assert [a["name"] for a in artifacts] == ["checkpoints/epoch=0-step=4.ckpt"]
    assert artifacts[0]["state"] == "ready"
    assert "ignored" not in str(projects)
    assert not any((tmp_path / "spool").iterdir())  # delivered: the copies went with it
