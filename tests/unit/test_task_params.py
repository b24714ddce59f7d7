"""A task's parameter overrides ("Run again"): their bounds and kinds at the server, the
agent's SAFEBOARD_PARAMS, and how init(config=defaults) applies them inside the task."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from safeboard.agent.attempt import task_environment
from safeboard.agent.state import AgentState
from safeboard.client.job_models import TaskLease
from safeboard.errors import ConfigError
from safeboard.jobs.spec import TaskSpec, params_problem, params_type_problem, spec_problem
from safeboard.sdk.task import task_env, with_overrides

CREDENTIAL = "sb_agent_0123456789ab_" + "S" * 43
STATE = AgentState(url="https://board:8443", agent_id="0123456789ab", name="gpu-1",
                   pool="gpu", credential=CREDENTIAL, ca_pem="PEM")  # fmt: skip
TASK = {"SAFEBOARD_URL": "https://b:8443", "SAFEBOARD_RUN_ID": "a" * 32,
        "SAFEBOARD_TASK_TOKEN": "sb_task_0123456789ab_" + "A" * 43}  # fmt: skip


def lease(**changes: object) -> TaskLease:
    values: dict[str, object] = {
        "task_id": 7, "attempt": 1, "run_id": "a" * 32, "command": ("python", "t.py"),
        "env": {}, "gpus": (), "max_seconds": None, "lease_seconds": 60,
        "lease_expires_at": datetime(2026, 12, 5, tzinfo=UTC), "deadline": None,
    }  # fmt: skip
    values.update(changes)
    return TaskLease(**values)  # type: ignore[arg-type]


def test_overrides_merge_nested_objects_and_replace_the_rest() -> None:
    defaults = {"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}, "layers": [1, 2], "x": 1}
    merged = with_overrides(defaults, {"lr": 0.5, "opt": {"beta": 0.99}, "layers": [3], "new": 1})
    assert merged == {"lr": 0.5, "opt": {"name": "adam", "beta": 0.99}, "layers": [3], "x": 1,
                      "new": 1}  # fmt: skip
    assert defaults["opt"] == {"name": "adam", "beta": 0.9}  # the script's own is untouched
    assert with_overrides(defaults, {}) == defaults


def test_the_agent_passes_them_as_json_and_the_sdk_reads_them() -> None:
    params = {"lr": 0.5, "opt": {"name": "sgd"}}
    env = task_environment(lease(params=params), STATE, None, {})
    assert json.loads(env["SAFEBOARD_PARAMS"]) == params
    assert "SAFEBOARD_PARAMS" not in task_environment(lease(), STATE, None, {})
    found = task_env({**TASK, "SAFEBOARD_PARAMS": env["SAFEBOARD_PARAMS"]})
    assert found is not None
    assert found.params == params
    plain = task_env(TASK)
    assert plain is not None
    assert plain.params == {}


@pytest.mark.parametrize("text", ["[1]", "{", "3"])
def test_a_malformed_params_variable_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="SAFEBOARD_PARAMS is not a JSON object"):
        task_env({**TASK, "SAFEBOARD_PARAMS": text})


def test_bounds() -> None:
    assert params_problem({"lr": 0.1}) is None
    assert params_problem([1]) == "params: a JSON object"
    assert (
        params_problem({"x": "y" * 40_000, "z": "y" * 40_000}) == "params: at most 64 KiB as JSON"
    )
    assert spec_problem(TaskSpec(["python"], params={"x": float("nan")})) is not None


def test_kinds_follow_the_runs_config() -> None:
    config = {"lr": 0.1, "on": True, "name": "a", "opt": {"b": 1}, "l": [1], "none": None}
    assert params_type_problem({"lr": 2, "on": False, "name": "b", "opt": {"b": 2.5},
                                "l": [], "none": "x", "unknown": [1]}, config) is None  # fmt: skip
    assert params_type_problem({"lr": "x"}, config) == "params.lr: a number, as in the run's config"
    assert (
        params_type_problem({"on": 1}, config) == "params.on: true or false, as in the run's config"
    )
    assert (
        params_type_problem({"lr": True}, config) == "params.lr: a number, as in the run's config"
    )
    assert params_type_problem({"opt": {"b": "x"}}, config) == (
        "params.opt.b: a number, as in the run's config"
    )
    assert params_type_problem({"l": {}}, config) == "params.l: a list, as in the run's config"


def test_any_text_reaches_the_environment_within_the_bound() -> None:
    params = {"prompt": "日本語" * 7000, "odd": "\ud800", "nul": "a\x00b"}
    assert params_problem(params) == "params: at most 64 KiB as JSON"  # escapes counted
    small = {"odd": "\ud800", "nul": "a\x00b", "text": "日本"}
    assert params_problem(small) is None
    env = task_environment(lease(params=small), STATE, None, {})
    assert env["SAFEBOARD_PARAMS"].isascii()
    assert "\x00" not in env["SAFEBOARD_PARAMS"]
    found = task_env({**TASK, "SAFEBOARD_PARAMS": env["SAFEBOARD_PARAMS"]})
    assert found is not None
    assert found.params == small
