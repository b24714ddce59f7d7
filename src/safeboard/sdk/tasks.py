"""``safeboard.submit()``: queue a command for an agent, with a directory as its code
(packed and uploaded as ``safeboard task submit`` does: ``safeboard.client.code``)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from safeboard.client.code import upload_code
from safeboard.client.credentials import resolve_server
from safeboard.client.typed import Client
from safeboard.errors import ConfigError

if TYPE_CHECKING:
    from safeboard.client.job_models import Task

__all__ = ["submit"]


def submit(
    project: str,
    command: str | Sequence[str],
    *,
    code: str | os.PathLike[str] | None = ".",
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    gpus: int = 0,
    labels: Sequence[str] = (),
    priority: int = 0,
    max_seconds: int | None = None,
    max_lost_retries: int = 2,
    retry_on_failure: bool = False,
    name: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> Task:
    """Queue ``command`` (argv, or a string split as a shell would, but run without one)
    in ``project`` and return the task (``task.run_id`` is its run, there already).
    ``code``: the directory uploaded as the task's code and working directory, less what
    its ``.gitignore`` and ``.safeboardignore`` files ignore (the same code is uploaded
    once per project); None runs a command that exists on the agent's machine.
    ``secrets``: variables for the task's environment that the server stores encrypted
    and never shows again (``env`` is shown to the project's readers). ``params``: values
    that ``safeboard.init(config=...)`` in the task puts over the script's defaults (the
    run's config shows them; "Run again" edits them). The server is found as
    ``safeboard.init()`` finds it."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ConfigError("command: give the program to run and its arguments")
    access = resolve_server(url, api_key)
    access.require_key(ConfigError)
    with Client(access.client()) as client:
        code_sha256 = None if code is None else upload_code(client, project, os.fspath(code)).sha256
        return client.submit_task(project, argv, env=env, gpus=gpus, labels=labels,
                                  priority=priority, max_seconds=max_seconds,
                                  max_lost_retries=max_lost_retries,
                                  retry_on_failure=retry_on_failure, name=name,
                                  code_sha256=code_sha256, secrets=secrets,
                                  params=params)  # fmt: skip
