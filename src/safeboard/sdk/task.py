"""Inside a task (S14): the agent runs the task's process with the server's URL, its CA
certificate, the task's run id and a token that reaches that run alone. ``init()`` then
attaches to that run, which the server made when the task was submitted, instead of
creating one: no configuration, no API key, no ``safeboard login``.

The token is used as the bearer credential and kept in memory only: the spool's
``run.json`` holds no credential (a run spooled while the server was away is delivered
later by ``safeboard sync`` with the user's own key).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safeboard.client.credentials import CA_CERT_ENV, URL_ENV
from safeboard.client.job_models import PARAMS_ENV
from safeboard.errors import ConfigError

__all__ = ["RUN_ID_ENV", "TASK_TOKEN_ENV", "TaskEnv", "task_env", "with_overrides"]

TASK_TOKEN_ENV = "SAFEBOARD_TASK_TOKEN"  # noqa: S105  (a variable's name)
RUN_ID_ENV = "SAFEBOARD_RUN_ID"


@dataclass(frozen=True)
class TaskEnv:
    """What the agent gives a task's process."""

    url: str
    token: str = field(repr=False)
    run_id: str
    ca_cert: str | None  # a PEM file: what the server's certificate must chain to
    # Parameter overrides ("Run again"): init(config=defaults) applies them on top.
    params: dict[str, Any] = field(default_factory=dict)


def task_env(environ: Mapping[str, str] | None = None) -> TaskEnv | None:
    """The task's settings when this process runs as a task (``SAFEBOARD_TASK_TOKEN``
    set), else None. A partial set is a ConfigError naming what is missing."""
    env = os.environ if environ is None else environ
    token = env.get(TASK_TOKEN_ENV, "").strip()
    if not token:
        return None
    missing = [name for name in (URL_ENV, RUN_ID_ENV) if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(
            f"{TASK_TOKEN_ENV} is set but {' and '.join(missing)} is not: a task's agent sets "
            "them all; outside a task, unset it"
        )
    return TaskEnv(
        url=env[URL_ENV].strip(),
        token=token,
        run_id=env[RUN_ID_ENV].strip(),
        ca_cert=env.get(CA_CERT_ENV) or None,
        params=_params(env.get(PARAMS_ENV, "")),
    )


def _params(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        params = json.loads(text)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise ConfigError(f"{PARAMS_ENV} is not a JSON object: a task's agent sets it")
    return params


def with_overrides(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` on top: nested objects are merged key by key, any
    other value (a list included) replaces the default; keys the defaults lack are added."""
    merged = dict(defaults)
    for key, value in overrides.items():
        was = merged.get(key)
        if isinstance(value, Mapping) and isinstance(was, Mapping):
            merged[key] = with_overrides(was, value)
        else:
            merged[key] = value
    return merged
