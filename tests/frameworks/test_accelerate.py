"""SafeboardTracker with a real Accelerator: a 5-step loop, the tracker given as an
instance and by name after register(); what reached the server is read back."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from tests.frameworks.conftest import Seen

pytestmark = pytest.mark.e2e

STEPS = 5


def train(accelerator: Any, project: str, **init_kwargs: Any) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers(
        project,
        config={"lr": 0.1, "optim": {"name": "sgd"}, "device": torch.device("cpu")},
        init_kwargs=init_kwargs,
    )
    for step in range(STEPS):
        x = torch.randn(16, 4)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        accelerator.log(
            {"loss": loss.detach(), "acc": {"train": 0.5, "val": 0.25}, "note": "text"},
            step=step,
        )
    accelerator.end_training()


def check(seen: Seen, run_id: str) -> None:
    run = seen.run(run_id)
    assert run["status"] == "finished"
    assert run["config"] == {"lr": 0.1, "optim/name": "sgd", "device": "cpu"}
    assert seen.counts(run_id) == {"loss": STEPS, "acc/train": STEPS, "acc/val": STEPS}
    steps, _ = seen.points(run_id, "loss")
    assert steps == list(range(STEPS))


def test_tracker_instance(seen: Seen) -> None:
    from safeboard.integrations.accelerate import SafeboardTracker

    tracker = SafeboardTracker("acc", run_name="five-steps")
    train(Accelerator(cpu=True, log_with=[tracker]), "ignored-for-an-instance")
    [found] = seen.get("/projects/acc/runs")["runs"]
    assert found["name"] == "five-steps"
    check(seen, found["id"])


def test_tracker_by_name(seen: Seen) -> None:
    from safeboard.integrations import accelerate as safeboard_accelerate

    safeboard_accelerate.register()
    accelerator = Accelerator(cpu=True, log_with="safeboard")
    # init_trackers' project name is the project; init_kwargs reach the tracker.
    train(accelerator, "acc-named", safeboard={"run_name": "by-name"})
    [found] = seen.get("/projects/acc-named/runs")["runs"]
    assert found["name"] == "by-name"
    check(seen, found["id"])
