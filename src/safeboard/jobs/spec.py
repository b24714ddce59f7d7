"""What a user submits (``TaskSpec``) and the bounds it must keep: checked in the use case
(safeboard.jobs.service), so the API, the CLI and any later caller get the same answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from safeboard.documents import document_problem

__all__ = [
    "ENV_NAME",
    "LABEL",
    "MAX_ARGS",
    "MAX_ARG_CHARS",
    "MAX_ENV",
    "MAX_ENV_VALUE_CHARS",
    "MAX_GPUS",
    "MAX_LABELS",
    "MAX_PARAMS_BYTES",
    "MAX_PRIORITY",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MAX_SECRETS",
    "MAX_SECRETS_BYTES",
    "MAX_SECRET_BYTES",
    "RESERVED_ENV_PREFIX",
    "SHA256",
    "TaskSpec",
    "params_problem",
    "params_type_problem",
    "spec_problem",
]

MAX_ARGS = 1000
MAX_ARG_CHARS = 10_000
MAX_COMMAND_CHARS = 100_000
MAX_ENV = 200
MAX_ENV_VALUE_CHARS = 10_000
MAX_GPUS = 64
MAX_LABELS = 20
MAX_PRIORITY = 1_000_000
MAX_RETRIES = 100
MAX_SECONDS = 30 * 86400
MAX_SECRETS = 32
MAX_SECRET_BYTES = 64 * 1024  # one value (UTF-8); the kernel takes 128 KiB per variable
MAX_SECRETS_BYTES = 256 * 1024  # all of one task's values together
# A task's parameter overrides as compact JSON: they reach the process in one environment
# variable (SAFEBOARD_PARAMS), and the kernel takes 128 KiB per variable.
MAX_PARAMS_BYTES = 64 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# What the agent sets for the task (its URL, CA file, run id, task token): never the user's.
RESERVED_ENV_PREFIX = "SAFEBOARD_"


@dataclass(frozen=True)
class TaskSpec:
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 0
    labels: list[str] = field(default_factory=list)
    priority: int = 0
    max_seconds: int | None = None
    max_lost_retries: int = 2
    retry_on_failure: bool = False
    name: str | None = None  # the run's name; "task-<id>" by default
    code_sha256: str | None = None  # the code archive uploaded to the project; None: none
    # Secret environment variables: sealed at rest, handed to the agent in the lease,
    # never shown (names only). Never in a repr.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    # Parameter overrides ("Run again"): inside the task, safeboard.init(config=defaults)
    # applies them on top of the script's defaults (docs/agents.md, "Parameters").
    params: dict[str, Any] = field(default_factory=dict)


def spec_problem(spec: TaskSpec) -> str | None:  # noqa: PLR0911  (one answer per bound)
    """What is wrong with ``spec``, or None."""
    problem = (_command_problem(spec.command) or _env_problem(spec.env)
               or _secrets_problem(spec.secrets, spec.env))  # fmt: skip
    if problem is not None:
        return problem
    if not 0 <= spec.gpus <= MAX_GPUS:
        return f"gpus: 0 to {MAX_GPUS}"
    if len(spec.labels) > MAX_LABELS or not all(LABEL.fullmatch(lb) for lb in spec.labels):
        return f"labels: at most {MAX_LABELS}, each letters, digits, . _ : - (63 at most)"
    if abs(spec.priority) > MAX_PRIORITY:
        return f"priority: -{MAX_PRIORITY} to {MAX_PRIORITY}"
    if spec.max_seconds is not None and not 1 <= spec.max_seconds <= MAX_SECONDS:
        return f"max_seconds: 1 to {MAX_SECONDS} (30 days)"
    if not 0 <= spec.max_lost_retries <= MAX_RETRIES:
        return f"max_lost_retries: 0 to {MAX_RETRIES}"
    if spec.name is not None and not 1 <= len(spec.name) <= 200:
        return "name: 1 to 200 characters"
    if spec.code_sha256 is not None and not SHA256.fullmatch(spec.code_sha256):
        return "code_sha256: the archive's SHA-256, 64 lowercase hex digits"
    return params_problem(spec.params)


def _as_passed(params: object) -> str:
    """The overrides as the agent passes them (agent/attempt.py): compact JSON, ASCII
    (escapes), so that any text, a lone surrogate included, fits an environment."""
    return json.dumps(params, separators=(",", ":"), allow_nan=False)


def params_problem(params: object) -> str | None:
    """What is wrong with a task's parameter overrides (a JSON object within a run
    config's bounds, at most MAX_PARAMS_BYTES as the agent passes them), or None."""
    problem = document_problem(params, "params")
    if problem is None and len(_as_passed(params)) > MAX_PARAMS_BYTES:
        problem = f"params: at most {MAX_PARAMS_BYTES // 1024} KiB as JSON"
    return problem


def _command_problem(command: list[str]) -> str | None:
    if not command or len(command) > MAX_ARGS:
        return f"command: 1 to {MAX_ARGS} arguments"
    if any("\x00" in arg or len(arg) > MAX_ARG_CHARS for arg in command):
        return f"command: arguments of at most {MAX_ARG_CHARS} characters, no NUL"
    if not command[0] or sum(map(len, command)) > MAX_COMMAND_CHARS:
        return f"command: a program name, at most {MAX_COMMAND_CHARS} characters in all"
    return None


def _env_problem(env: dict[str, str]) -> str | None:
    if len(env) > MAX_ENV:
        return f"env: at most {MAX_ENV} variables"
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            return f"env: {name[:40]!r} is not a variable name (letters, digits, _)"
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            return f"env: {name} is reserved (the agent sets SAFEBOARD_* for the task)"
        if "\x00" in value or len(value) > MAX_ENV_VALUE_CHARS:
            return f"env: {name}: at most {MAX_ENV_VALUE_CHARS} characters, no NUL"
    return None


def _secrets_problem(secrets: dict[str, str], env: dict[str, str]) -> str | None:  # noqa: PLR0911
    """What is wrong with a task's secrets; never quotes a value."""
    if len(secrets) > MAX_SECRETS:
        return f"secrets: at most {MAX_SECRETS}"
    total = 0
    for name, value in secrets.items():
        if not ENV_NAME.fullmatch(name):
            return f"secrets: {name[:40]!r} is not a variable name (letters, digits, _)"
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            return f"secrets: {name} is reserved (the agent sets SAFEBOARD_* for the task)"
        if name in env:
            return f"secrets: {name} is also in env: a variable is either plain or secret"
        try:
            size = len(value.encode())
        except UnicodeEncodeError:  # a lone surrogate: no environment can hold it
            size = 0
        if "\x00" in value or not 1 <= size <= MAX_SECRET_BYTES:
            return f"secrets: {name}: 1 to {MAX_SECRET_BYTES} bytes of UTF-8, no NUL"
        total += size
    if total > MAX_SECRETS_BYTES:
        return f"secrets: at most {MAX_SECRETS_BYTES} bytes in all"
    return None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null"


def params_type_problem(params: dict[str, Any], config: dict[str, Any]) -> str | None:
    """Where ``params`` gives a value of another kind than ``config`` (the run's config:
    what the script received) holds at the same key (a number for a number, text for
    text...), or None. Keys the config lacks, and nulls on either side, are taken as
    they are: the script decides what to make of them."""
    stack: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("params", params, config)]
    while stack:
        where, given, known = stack.pop()
        for key, value in given.items():
            if key not in known or value is None or known[key] is None:
                continue
            path, was = f"{where}.{key}", known[key]
            if isinstance(value, dict) and isinstance(was, dict):
                stack.append((path, value, was))
            elif _kind(value) != _kind(was):
                return f"{path[:300]}: {_kind(was)}, as in the run's config"
    return None
