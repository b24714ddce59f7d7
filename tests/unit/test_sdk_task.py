"""What ``safeboard.init()`` reads inside a task (sdk/task.py): all four variables, or a
ConfigError naming the missing ones; outside a task, nothing."""

from __future__ import annotations

import pytest

from safeboard.errors import ConfigError
from safeboard.sdk.task import task_env

TOKEN = "sb_task_0123456789ab_" + "A" * 43
FULL = {
    "SAFEBOARD_URL": "https://board.example:8443",
    "SAFEBOARD_CA_CERT": "/run/task/ca.pem",
    "SAFEBOARD_RUN_ID": "a" * 32,
    "SAFEBOARD_TASK_TOKEN": TOKEN,
}


def test_outside_a_task_there_is_nothing() -> None:
    assert task_env({}) is None
    assert task_env({"SAFEBOARD_URL": "https://x", "SAFEBOARD_TASK_TOKEN": " "}) is None


def test_inside_a_task_all_four() -> None:
    found = task_env(FULL)
    assert found is not None
    assert (found.url, found.run_id, found.ca_cert) == (FULL["SAFEBOARD_URL"], "a" * 32,
                                                       "/run/task/ca.pem")  # fmt: skip
    assert found.token == TOKEN
    assert TOKEN not in repr(found)


@pytest.mark.parametrize("missing", ["SAFEBOARD_URL", "SAFEBOARD_RUN_ID"])
def test_a_partial_task_environment_names_what_is_missing(missing: str) -> None:
    env = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(ConfigError, match=missing) as refused:
        task_env(env)
    assert TOKEN not in str(refused.value)
