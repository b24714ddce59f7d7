"""``safeboard task submit | list | show | cancel | retry | logs``: queued jobs, through the
typed client (``safeboard.client.Client``), on whichever server the SDK would use."""

from __future__ import annotations

import json
import os
import re
import shlex
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from safeboard.cli.options import connect, json_option, url_option
from safeboard.vocabulary import TaskState

if TYPE_CHECKING:
    from safeboard.client import Client
    from safeboard.client.job_models import Task
    from safeboard.errors import ServiceUnavailable

__all__ = ["parse_duration", "read_params", "read_secrets", "task"]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``45m``, ``2h``, ``1d``, ``1h30m`` -> seconds (at least 1)."""
    given = text.strip().lower()
    if given.isdigit():
        seconds = int(given)
    else:
        parts = _DURATION.findall(given)
        if not parts or "".join(n + u for n, u in parts) != given:
            raise click.BadParameter(f"{text!r}: a duration such as 90s, 45m, 2h, 1d or 1h30m")
        seconds = sum(int(n) * _UNIT[u] for n, u in parts)
    if seconds < 1:
        raise click.BadParameter(f"{text!r}: at least one second")
    return seconds


def _env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r}: write NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


VALUE_ON_COMMAND_LINE = (
    "--secret {name}=...: a value on the command line is visible to every user of this "
    "machine (ps, /proc) and stays in your shell history, so it is refused. Use "
    "--secret {name} to take it from your environment variable {name}, or "
    "--secret {name}=@FILE to read it from a file"
)


def read_secrets(specs: tuple[str, ...], environ: dict[str, str] | None = None) -> dict[str, str]:
    """``--secret NAME`` (the value of the environment variable NAME) and
    ``--secret NAME=@FILE`` (the file's text, less one final newline). A value written
    on the command line (``NAME=value``) is refused: argv is visible in ``ps``. Messages
    never quote a value."""
    environ = dict(os.environ) if environ is None else environ
    found: dict[str, str] = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not name:
            raise click.BadParameter(f"{spec[:1]}...: write NAME or NAME=@FILE",
                                     param_hint="--secret")  # fmt: skip
        if name in found:
            raise click.BadParameter(f"{name} is given twice", param_hint="--secret")
        if not sep:
            if name not in environ:
                raise click.BadParameter(f"{name} is not set in your environment: export it, "
                                         f"or write --secret {name}=@FILE",
                                         param_hint="--secret")  # fmt: skip
            found[name] = environ[name]
        elif source.startswith("@") and len(source) > 1:
            found[name] = _secret_file(name, Path(source[1:]).expanduser())
        else:
            raise click.UsageError(VALUE_ON_COMMAND_LINE.format(name=name))
    return found


def read_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param KEY=VALUE``: VALUE as JSON where it reads as JSON, else the text itself;
    a dotted KEY (``optim.lr``) sets a nested value."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(part.strip() for part in parts):
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE", param_hint="--param")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        node = found
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise click.BadParameter(f"{key}: {part} is given a value and keys",
                                         param_hint="--param")  # fmt: skip
            node = child
        if parts[-1] in node:
            raise click.BadParameter(f"{key} is given twice", param_hint="--param")
        node[parts[-1]] = value
    return found


def _secret_file(name: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise click.BadParameter(f"{name}: cannot read {path} ({why})",
                                 param_hint="--secret") from None  # fmt: skip
    return text.removesuffix("\n").removesuffix("\r")


def _time(value: Any) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="seconds")[:19]


@click.group()
def task() -> None:
    """Queued jobs: submit a command to run on an agent, follow, cancel, retry."""


@task.command("submit", context_settings={"allow_interspersed_args": False})
@click.option("--project", required=True)
@click.option("--gpus", type=click.IntRange(0, 64), default=0, show_default=True)
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="An agent label the task needs (repeat for more).")  # fmt: skip
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--max-duration", "max_duration", default=None, metavar="DURATION",
              help="Stopped (failed) after this long: 90s, 45m, 2h, 1d, 1h30m.")  # fmt: skip
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE",
              help="A plain environment variable (readers see it: no secrets).")  # fmt: skip
@click.option("--secret", "secret_specs", multiple=True, metavar="NAME[=@FILE]",
              help="A secret environment variable for the task: from your environment "
                   "variable NAME, or read from FILE. Stored encrypted, shown to nobody "
                   "(repeat for more).")  # fmt: skip
@click.option("--retries", "max_lost_retries", type=click.IntRange(0, 100), default=2,
              show_default=True, help="Retries of a lost attempt (its agent gone).")  # fmt: skip
@click.option("--retry-on-failure", is_flag=True,
              help="Retry a non-zero exit too (within the same number of retries).")  # fmt: skip
@click.option("--name", default=None, help="The run's name (default: task-<id>).")
@click.option("--param", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="A parameter over the defaults the script gives safeboard.init(config=...): "
                   "VALUE is read as JSON (0.1, true, \"adam\", [1, 2]), else as text; "
                   "KEY may be dotted (optim.lr).")  # fmt: skip
@click.option("--code", "code_dir", default=None, metavar="DIR",
              help="The directory uploaded as the task's code (default: the current one), "
                   "less what its .gitignore and .safeboardignore files ignore.")  # fmt: skip
@click.option("--no-code", "no_code", is_flag=True,
              help="Upload nothing: run a command that exists on the agent's machine.")  # fmt: skip
@click.argument("command", nargs=-1, required=True)
@url_option
@json_option
def submit(
    project: str,
    gpus: int,
    labels: tuple[str, ...],
    priority: int,
    max_duration: str | None,
    env_pairs: tuple[str, ...],
    secret_specs: tuple[str, ...],
    max_lost_retries: int,
    retry_on_failure: bool,
    name: str | None,
    param_pairs: tuple[str, ...],
    code_dir: str | None,
    no_code: bool,
    command: tuple[str, ...],
    url: str | None,
    as_json: bool,
) -> None:
    """Queue COMMAND (after --) for an agent, run in the current directory's code:
    safeboard task submit --project P -- python train.py --lr 0.1"""
    if no_code and code_dir is not None:
        raise click.UsageError("--code and --no-code: give one of them")
    max_seconds = None if max_duration is None else parse_duration(max_duration)
    env = _env(env_pairs)
    secrets = read_secrets(secret_specs)
    params = read_params(param_pairs)
    from safeboard.errors import NotFound, ProjectMoved, ProjectNotFound

    with connect(url) as client:
        try:
            code_sha256 = None if no_code else _upload(client, project, code_dir or ".")
            made = client.submit_task(project, list(command), env=env, gpus=gpus, labels=labels,
                                      priority=priority, max_seconds=max_seconds,
                                      max_lost_retries=max_lost_retries,
                                      retry_on_failure=retry_on_failure, name=name,
                                      code_sha256=code_sha256, secrets=secrets,
                                      params=params)  # fmt: skip
        except ProjectMoved:  # renamed: its message names the project's current name
            raise
        except NotFound as exc:  # the project: the only thing a submit looks up
            raise ProjectNotFound(
                f"{exc.message}: {project!r} is not a project you can see on {client.api.url}; "
                f"create it with `safeboard projects create {project}`, or ask its owner for "
                "a grant"
            ) from None
    if as_json:
        click.echo(json.dumps(made.to_json()))
        return
    click.echo(f"task {made.id} queued in {made.project} (run {made.run_id})")
    _say_waiting(made)


def _say_waiting(made: Task) -> None:
    """On stderr: why no agent will take the task until one that can joins."""
    if made.waiting_reason:
        click.echo(f"task {made.id} waits: {made.waiting_reason}", err=True)


def _upload(client: Client, project: str, directory: str) -> str:
    """Pack and upload ``directory`` (once per project); what happened, on stderr."""
    from safeboard.client.code import upload_code
    from safeboard.sizes import human_size

    sent = upload_code(client, project, directory)
    how = "uploaded" if sent.sent else "already on the server"
    click.echo(f"code: {sent.files} files, {human_size(sent.size)} packed "
               f"({sent.sha256[:12]}), {how}", err=True)  # fmt: skip
    if sent.skipped_links:
        shown = ", ".join(sent.skipped_links[:5]) + (", ..." if len(sent.skipped_links) > 5 else "")
        click.echo(f"code: left out {len(sent.skipped_links)} link(s) pointing out of "
                   f"{directory}: {shown}", err=True)  # fmt: skip
    return sent.sha256


@task.command("list")
@click.option("--project", default=None, help="One project (default: every one you can read).")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in TaskState]),
              help="Only tasks in this state (repeat for more).")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@url_option
@json_option
def list_tasks(
    project: str | None, states: tuple[str, ...], limit: int, url: str | None, as_json: bool
) -> None:
    """Tasks, newest first."""
    from itertools import islice

    from safeboard.cli.output import json_lines, table

    with connect(url) as client:
        found = list(islice(client.tasks(project=project, states=states,
                                         page_size=min(limit, 500)), limit))  # fmt: skip
    if as_json:
        json_lines(_listed(t) for t in found)
        return
    table(
        ["task", "project", "state", "gpus", "priority", "created", "command"],
        [[str(t.id), t.project, t.state.value, str(t.gpus), str(t.priority), _time(t.created_at),
          shlex.join(t.command)] for t in found],
        no_wrap=["task", "state", "created"], empty="no tasks",
    )  # fmt: skip


def _listed(found: Task) -> dict[str, Any]:
    row = found.to_json()
    row.pop("attempts", None)
    return row


def _task_id(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= 2**62:
        raise click.BadParameter(f"{value!r} is not a task id (a number, as printed)")
    return int(text)


@task.command("show")
@click.argument("task_id")
@url_option
@json_option
def show_task(task_id: str, url: str | None, as_json: bool) -> None:
    """A task: its command, where it stands, who cancelled it, and each attempt."""
    from safeboard.cli.output import table

    with connect(url) as client:
        found = client.task(_task_id(task_id))
    if as_json:
        click.echo(json.dumps(found.to_json()))
        return
    click.echo(f"task {found.id} in {found.project}: {found.state.value}"
               + (f" ({found.reason})" if found.reason else ""))  # fmt: skip
    if found.waiting_reason:
        click.echo(f"waiting: {found.waiting_reason}")
    click.echo(f"command: {shlex.join(found.command)}")
    click.echo(f"run: {found.run_id}")
    needs = [f"{found.gpus} GPU(s)", *(f"label {lb}" for lb in found.labels)]
    click.echo(f"needs: {', '.join(needs)}; priority {found.priority}")
    if found.env:
        click.echo("env: " + " ".join(sorted(found.env)))  # names only: values via --json
    if found.secret_names:
        click.echo("secrets: " + " ".join(found.secret_names))  # the server knows no more
    if found.params:
        click.echo("params: " + json.dumps(found.params, sort_keys=True))
    if found.cancel_requested_by:
        click.echo(f"cancel requested by: {found.cancel_requested_by}")
    if found.retry_of:
        click.echo(f"retry of task {found.retry_of}")
    table(
        ["attempt", "agent", "state", "gpus", "leased", "ended", "exit", "reason"],
        [[str(a.attempt), a.agent_id, a.state.value, ",".join(a.gpu_uuids), _time(a.leased_at),
          _time(a.ended_at), _exit(a.exit_code, a.signal), a.reason] for a in found.attempts],
        no_wrap=["attempt", "state", "leased"], empty="no attempts yet",
    )  # fmt: skip


def _exit(code: int | None, signal: int | None) -> str:
    if signal is not None:
        return f"signal {signal}"
    return "" if code is None else str(code)


@task.command("cancel")
@click.argument("task_id")
@url_option
def cancel_task(task_id: str, url: str | None) -> None:
    """Cancel a task: at once if queued; a running one is stopped by its agent (at its
    next heartbeat) and reads "cancelling" until then."""
    with connect(url) as client:
        found = client.cancel_task(_task_id(task_id))
    click.echo(f"task {found.id}: {found.state.value}")


@task.command("retry")
@click.argument("task_id")
@url_option
def retry_task(task_id: str, url: str | None) -> None:
    """Queue a finished task again, as a new task with a new run."""
    with connect(url) as client:
        found = client.retry_task(_task_id(task_id))
    click.echo(f"task {found.id} queued in {found.project} (run {found.run_id}), "
               f"a retry of task {found.retry_of}")  # fmt: skip
    _say_waiting(found)


def _say_away(task_id: int, error: ServiceUnavailable | None) -> None:
    """What a follow says once when the server goes away, and once when it is back."""
    if error is None:
        click.echo(f"task {task_id}: the server answers again", err=True)
    else:
        click.echo(f"task {task_id}: the server is away ({error.message}); following on "
                   "when it answers again (Ctrl-C stops)", err=True)  # fmt: skip


@task.command("logs")
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True,
              help="Print lines as they come until the task ends (exit 0: succeeded).")  # fmt: skip
@click.option("--attempt", type=click.IntRange(1, 2**31 - 1), default=None,
              help="This attempt's output (default: the latest; -f follows retries).")  # fmt: skip
@url_option
@json_option
def task_logs(
    task_id: str, follow: bool, attempt: int | None, url: str | None, as_json: bool
) -> None:
    """A task's output: its stdout lines to stdout, its stderr lines to stderr, in order.
    Ctrl-C stops following."""
    number = _task_id(task_id)
    seen_attempt = attempt
    try:
        with connect(url) as client:
            lines = client.task_logs(number, attempt=attempt, follow=follow,
                                     on_away=partial(_say_away, number))  # fmt: skip
            for line in lines:
                if seen_attempt is not None and line.attempt != seen_attempt:
                    click.echo(f"task {number}: attempt {line.attempt} (a retry) from here",
                               err=True)  # fmt: skip
                seen_attempt = line.attempt
                if as_json:
                    click.echo(json.dumps({"attempt": line.attempt, "n": line.number,
                                           "stream": line.stream, "text": line.text}))  # fmt: skip
                else:
                    click.echo(line.text, err=line.stream == "stderr")
            if not follow:
                return
            found = client.task(number)
    except KeyboardInterrupt:  # Ctrl-C: stop following, quietly
        raise SystemExit(130) from None
    if found.state is not TaskState.SUCCEEDED:
        reason = f" ({found.reason})" if found.reason else ""
        click.echo(f"task {number}: {found.state.value}{reason}", err=True)
        raise SystemExit(1)
