"""``safeboard agent token | list | revoke`` (admins, through the typed client with their
saved login) and ``safeboard agent join | status | run`` (on the GPU machine, with the
agent's own state): docs/agents.md."""

from __future__ import annotations

import re
from pathlib import Path

import click

from safeboard.cli.options import connect, json_option, url_option

__all__ = ["agent"]

_TTL = re.compile(r"(\d+)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl_seconds(text: str) -> int:
    match = _TTL.fullmatch(text.strip().lower())
    if match is None:
        raise click.BadParameter("a duration such as 90s, 30m, 1h or 7d")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not 60 <= seconds <= 7 * 86400:
        raise click.BadParameter("from 1 minute to 7 days")
    return seconds


def _duration(text: str, low: float, high: float, option: str) -> float:
    """``30s``, ``2m``, ``1h`` or plain seconds, from ``low`` to ``high``."""
    match = _TTL.fullmatch(text.strip().lower())
    if match is None:
        raise click.BadParameter("a duration such as 30s, 2m or 1h", param_hint=option)
    seconds = float(int(match.group(1)) * _UNIT[match.group(2)])
    if not low <= seconds <= high:
        raise click.BadParameter(f"from {low:g} s to {high:g} s", param_hint=option)
    return seconds


def _indexes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("GPU indexes, comma-separated: 0,1") from None


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")  # as the server checks them


def _labels(text: str) -> list[str]:
    found = [label.strip() for label in text.split(",") if label.strip()]
    for label in found:
        if not _LABEL.fullmatch(label):
            raise click.BadParameter(
                f"{label[:70]!r} is not a label: letters, digits, . _ : - (63 at most, the "
                "first a letter or digit)",
                param_hint="'--labels'",
            )
    return found


def _state_dir_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="The agent's state (default: $SAFEBOARD_AGENT_STATE_DIR, else "
        "~/.local/share/safeboard-agent).",
    )(func)


def _warn(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def agent() -> None:
    """Agents: enroll GPU machines that run queued tasks (docs/agents.md)."""


@agent.command("token")
@url_option
@click.option("--pool", required=True, help="The pool the agent joins (e.g. gpu-a100).")
@click.option("--labels", default="", help="Comma-separated labels given to the agent.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d (max).")
@click.option(
    "--ca-pin",
    default=None,
    help="Only where TLS ends at a proxy: the SHA-256 (base64url) of the proxy CA's key.",
)
def token(url: str | None, pool: str, labels: str, ttl: str, ca_pin: str | None) -> None:
    """Mint a one-time join string for one agent (admins). It is shown once."""
    seconds = _ttl_seconds(ttl)
    with connect(url) as client:
        made = client.create_join_token(
            pool, labels=_labels(labels), ttl_seconds=seconds, ca_pin=ca_pin
        )
    expiry = made.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    click.echo(made.join_string)
    click.echo(
        f"join token {made.id} for pool {made.pool}: single use, expires {expiry}.\n"
        "On the GPU machine, run (in single quotes; the string is a secret until used):\n"
        "  safeboard agent join '<the line above>'",
        err=True,
    )


@agent.command("join")
@click.argument("join_string")
@_state_dir_option
@click.option(
    "--insecure-skip-verify",
    is_flag=True,
    help="Do not check the server's TLS certificate (warns at every connection).",
)
def join(join_string: str, state_dir: Path | None, insecure_skip_verify: bool) -> None:
    """Enroll this machine with the join string an admin gave you. The server's CA is
    checked against the string's pin before anything is sent."""
    from safeboard import __version__
    from safeboard.agent import default_state_dir, detect
    from safeboard.agent import join as join_server

    directory = (state_dir or default_state_dir()).expanduser()
    joined = join_server(
        join_string,
        directory,
        machine=detect(),
        version=__version__,
        insecure=insecure_skip_verify,
        warn=_warn,
    )
    state = joined.state
    click.echo(f"joined {state.url} as agent {state.name} ({state.agent_id}), pool {state.pool}")
    click.echo(f"credential stored in {joined.path} (0600)")
    where = f" --state-dir {directory}" if state_dir else ""
    click.echo(f"next: safeboard agent status{where}")


@agent.command("status")
@_state_dir_option
@click.option("--labels", default="", help="Comma-separated labels this machine reports.")
@json_option
def status(state_dir: Path | None, labels: str, as_json: bool) -> None:
    """Say hello to the server with this machine's inventory, and show what it knows."""
    from safeboard import __version__
    from safeboard.agent import client_for, default_state_dir, detect, load

    state = load((state_dir or default_state_dir()).expanduser())
    machine = detect(_labels(labels))
    with client_for(
        state.url,
        credential=state.credential,
        ca_pem=state.ca_pem,
        insecure=state.insecure,
        warn=_warn,
    ) as client:
        answer = client.hello(machine.hello(__version__))
    if as_json:
        from safeboard.cli.output import json_lines

        json_lines([{**answer.to_json(), "server": state.url, "gpu_source": machine.source,
                     "gpus": [gpu.to_json() for gpu in machine.gpus]}])  # fmt: skip
        return
    click.echo(f"agent {answer.name} ({answer.agent_id}), pool {answer.pool}, server {state.url}")
    click.echo(f"labels: {', '.join(answer.labels) or '(none)'}")
    click.echo(f"cpus: {machine.cpus}, memory: {machine.memory_mib} MiB")
    if machine.source == "none":  # neither NVML nor nvidia-smi answered
        click.echo("gpus: none found (neither NVML nor nvidia-smi answered: no NVIDIA driver?)")
    else:
        click.echo(f"gpus ({machine.source}): {len(machine.gpus) or 'none'}")
    for gpu in machine.gpus:
        click.echo(f"  {gpu.index}: {gpu.model} {gpu.memory_mib} MiB {gpu.uuid}")
    click.echo(f"next: safeboard agent run{' --state-dir ' + str(state_dir) if state_dir else ''}")


@agent.command("run")
@_state_dir_option
@click.option("--gpus", default=None, help="GPU indexes this agent hands out: 0,1 (default: all).")
@click.option("--labels", default="", help="Comma-separated labels this machine offers.")
@click.option("--max-tasks", type=click.IntRange(1, 1024), default=None,
              help="Tasks at once (default: one per GPU, or 1 without GPUs).")  # fmt: skip
@click.option("--grace", default="30s", show_default=True,
              help="After SIGTERM, how long a stopped task has before SIGKILL.")  # fmt: skip
@click.option("--drain-timeout", default="60s", show_default=True,
              help="On Ctrl-C or SIGTERM, how long running tasks may go on.")  # fmt: skip
@click.option("--poll", default="20s", show_default=True,
              help="How long each lease request waits for a task (1s to 25s).")  # fmt: skip
@click.option("--task-user", default=None, metavar="USER",
              help="Run each task as this OS user (the agent runs as root): tasks cannot "
              "read the agent's credential. Recommended.")  # fmt: skip
@click.option("--launcher", type=click.Choice(["process", "slurm"]), default="process",
              show_default=True, help="Run each task as a child process, or as a Slurm batch "
              "job (the agent on a login node).")  # fmt: skip
@click.option("--partition", default=None, help="Slurm: the partition jobs go to.")
@click.option("--account", default=None, help="Slurm: the account jobs are charged to.")
@click.option(
    "--max-jobs",
    type=click.IntRange(1, 10000),
    default=None,
    help="Slurm: jobs at once (default 8).",
)
@click.option("--cpus-per-task", type=click.IntRange(1, 4096), default=None,
              help="Slurm: CPUs of each job (sbatch --cpus-per-task).")  # fmt: skip
@click.option("--mem", default=None, help="Slurm: memory of each job (sbatch --mem: 16G).")
@click.option("--job-dir", type=click.Path(path_type=Path), default=None,
              help="Slurm: where the private job directories go, on a filesystem the compute "
              "nodes share (default: <state dir>/slurm-jobs).")  # fmt: skip
def run(
    state_dir: Path | None,
    gpus: str | None,
    labels: str,
    max_tasks: int | None,
    grace: str,
    drain_timeout: str,
    poll: str,
    task_user: str | None,
    launcher: str,
    partition: str | None,
    account: str | None,
    max_jobs: int | None,
    cpus_per_task: int | None,
    mem: str | None,
    job_dir: Path | None,
) -> None:
    """Serve the queue: lease tasks that fit this machine's free GPUs, run each as a
    child process, report its exit. Ctrl-C drains (twice: stops the tasks now)."""
    from safeboard import __version__
    from safeboard.agent import Runner, RunOptions, default_state_dir, detect, load
    from safeboard.agent.isolation import make_undumpable
    from safeboard.agent.isolation import task_user as checked_user
    from safeboard.client.config import private_dir

    user = checked_user(task_user) if task_user is not None else None
    directory = (state_dir or default_state_dir()).expanduser()
    state = load(directory)
    if user is not None:
        private_dir(directory)  # 0700, or refused: the task user must not reach it
    machine = detect(_labels(labels))
    slurm = None
    if launcher == "slurm":
        from safeboard.agent.launchers.slurm import slurm_launcher
        from safeboard.agent.launchers.slurm_job import SlurmJobOptions

        if gpus is not None or user is not None or max_tasks is not None:
            raise click.UsageError("--launcher slurm: Slurm places the jobs; --gpus, --task-user "
                                   "and --max-tasks are for the process launcher")  # fmt: skip
        if mem is not None and not re.fullmatch(r"[1-9][0-9]*[KMGT]?", mem.strip()):
            raise click.BadParameter("a size such as 500M, 16G or 1T", param_hint="'--mem'")
        job_options = SlurmJobOptions(partition, account, cpus_per_task, mem and mem.strip())
        where = job_dir.expanduser().absolute() if job_dir is not None else None
        slurm, machine = slurm_launcher(job_options, where, machine)
        max_tasks = max_jobs or 8
    elif any(v is not None for v in (partition, account, max_jobs, cpus_per_task, mem, job_dir)):
        raise click.UsageError("--partition, --account, --max-jobs, --cpus-per-task, --mem and "
                               "--job-dir are for --launcher slurm")  # fmt: skip
    options = RunOptions(
        gpu_indexes=_indexes(gpus),
        labels=_labels(labels),
        max_tasks=max_tasks,
        grace=_duration(grace, 0, 3600, "'--grace'"),
        drain_timeout=_duration(drain_timeout, 0, 7 * 86400, "'--drain-timeout'"),
        poll=_duration(poll, 1, 25, "'--poll'"),  # 0 would ask again at once, in a loop
        task_user=user,
        launcher=slurm,
    )
    # No task of the same OS user may read /proc/<agent>/environ or the agent's memory.
    make_undumpable()
    runner = Runner(state, directory, options, machine=machine,
                    version=__version__, say=click.echo, warn=_warn)  # fmt: skip
    runner.run()


@agent.command("list")
@url_option
@json_option
def list_(url: str | None, as_json: bool) -> None:
    """Enrolled agents with pool, host, GPUs and last call (admins)."""
    from safeboard.cli.output import json_lines, table

    with connect(url) as client:
        found = client.agents()
    if as_json:
        json_lines(a.to_json() for a in found)
        return
    table(
        ["agent", "name", "pool", "host", "version", "gpus", "last seen", "from", "state"],
        [[a.id, a.name, a.pool, a.hostname, a.version, str(len(a.gpus)),
          a.last_seen_at.strftime("%Y-%m-%d %H:%M") if a.last_seen_at else "never",
          a.last_address or "", "revoked" if a.revoked_at else "active"] for a in found],
        no_wrap=["agent", "last seen", "state"], empty="no agents",
    )  # fmt: skip


@agent.command("revoke")
@url_option
@click.argument("agent_id")
def revoke(url: str | None, agent_id: str) -> None:
    """Revoke an agent at once (admins): its next call is refused."""
    with connect(url) as client:
        revoked = client.revoke_agent(agent_id.strip())
    click.echo(f"agent {revoked.name} ({revoked.id}) revoked")
