"""What a task's process receives from the agent (S14), and which GPUs an agent offers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from safeboard.agent.attempt import task_environment
from safeboard.agent.inventory import Gpu, Machine
from safeboard.agent.runner import chosen_gpus
from safeboard.agent.state import AgentState
from safeboard.client.job_models import TaskLease
from safeboard.errors import ConfigError

CREDENTIAL = "sb_agent_0123456789ab_" + "S" * 43
STATE = AgentState(url="https://board:8443", agent_id="0123456789ab", name="gpu-1",
                   pool="gpu", credential=CREDENTIAL, ca_pem="PEM")  # fmt: skip
PARENT = {"PATH": "/usr/bin", "HOME": "/home/agent", "LANG": "C.UTF-8",
          "SAFEBOARD_API_KEY": "sb_0123456789ab_" + "K" * 43, "AWS_SECRET_ACCESS_KEY": "x",
          "SAFEBOARD_AGENT_STATE_DIR": "/var/lib/agent"}  # fmt: skip


def lease(**changes: object) -> TaskLease:
    values: dict[str, object] = {
        "task_id": 7, "attempt": 2, "run_id": "a" * 32, "command": ("python", "t.py"),
        "env": {"LR": "0.1", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "gpus": ("GPU-1", "GPU-2"),
        "max_seconds": None, "lease_seconds": 60,
        "lease_expires_at": datetime(2026, 12, 5, tzinfo=UTC), "deadline": None,
    }  # fmt: skip
    values.update(changes)
    return TaskLease(**values)  # type: ignore[arg-type]


def test_the_environment_is_built_from_nothing() -> None:
    env = task_environment(lease(), STATE, Path("/s/tasks/7.2/ca.pem"), PARENT)
    assert env == {
        "PATH": "/usr/bin", "HOME": "/home/agent", "LANG": "C.UTF-8", "LR": "0.1",
        "SAFEBOARD_URL": "https://board:8443", "SAFEBOARD_RUN_ID": "a" * 32,
        "SAFEBOARD_TASK_ID": "7", "SAFEBOARD_ATTEMPT": "2",
        "SAFEBOARD_CA_CERT": "/s/tasks/7.2/ca.pem",
        "CUDA_VISIBLE_DEVICES": "GPU-1,GPU-2",  # the task's own value cannot widen it
        "NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-2",
    }  # fmt: skip
    assert CREDENTIAL not in repr(env)


def test_a_task_token_is_passed_when_the_lease_has_one() -> None:
    env = task_environment(lease(task_token="sb_task_1_secret", gpus=()), STATE, None, PARENT)
    assert env["SAFEBOARD_TASK_TOKEN"] == "sb_task_1_secret"
    assert "SAFEBOARD_CA_CERT" not in env
    assert (env["CUDA_VISIBLE_DEVICES"], env["NVIDIA_VISIBLE_DEVICES"]) == ("", "none")
    assert "sb_task_1_secret" not in repr(lease(task_token="sb_task_1_secret"))


def test_gpus_chosen_by_index() -> None:
    gpus = tuple(Gpu(i, f"GPU-{i}", "H100", 80000) for i in range(3))
    machine = Machine("h", 8, 1024, gpus)
    assert [g.uuid for g in chosen_gpus(machine, None)] == ["GPU-0", "GPU-1", "GPU-2"]
    assert [g.uuid for g in chosen_gpus(machine, [2, 0, 2])] == ["GPU-2", "GPU-0"]
    with pytest.raises(ConfigError, match="lacks"):
        chosen_gpus(machine, [5])
