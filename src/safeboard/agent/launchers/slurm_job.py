"""One Slurm job's files: a private (0700) job directory on a filesystem the compute
nodes share, holding the task's code (``work/``), the server's CA (``ca.pem``), the
batch script, the job's output file, and ``env``: the task's variables, secrets and task
token, 0600, which the batch script reads, exports and removes before it runs the
command. So the token never rides on sbatch's command line, an ``--export`` value, the
job's comment or the script Slurm stores. The agent removes the whole directory when the
job ends. docs/agents.md, "Slurm"."""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safeboard.agent.output import Spool
from safeboard.client.config import private_dir, write_private
from safeboard.client.job_models import TaskLease

__all__ = ["JobDir", "SlurmJobOptions", "sbatch_arguments"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_READ = 64 * 1024


@dataclass(frozen=True)
class SlurmJobOptions:
    partition: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None  # sbatch's --mem: 4G, 500M


def time_limit(lease: TaskLease, now: datetime | None = None) -> str | None:
    """``--time`` in whole minutes, rounded up: what is left of the task's maximum
    duration (its deadline), None without one."""
    if lease.deadline is None:
        return None if lease.max_seconds is None else str(math.ceil(lease.max_seconds / 60))
    left = (lease.deadline - (now or datetime.now(UTC))).total_seconds()
    return str(max(1, math.ceil(left / 60)))


def sbatch_arguments(lease: TaskLease, options: SlurmJobOptions, output: Path) -> list[str]:
    """sbatch's options for one attempt: nothing secret, no ``--export`` values (sbatch
    runs with a minimal environment, slurm_cli.py)."""
    args = [f"--job-name=safeboard-task-{lease.task_id}.{lease.attempt}",
            f"--output={output}", "--no-requeue", "--nodes=1", "--ntasks=1"]  # fmt: skip
    if options.partition:
        args.append(f"--partition={options.partition}")
    if options.account:
        args.append(f"--account={options.account}")
    if lease.gpus:
        args.append(f"--gres=gpu:{len(lease.gpus)}")
    if options.cpus_per_task:
        args.append(f"--cpus-per-task={options.cpus_per_task}")
    if options.mem:
        args.append(f"--mem={options.mem}")
    limit = time_limit(lease)
    if limit is not None:
        args.append(f"--time={limit}")
    return args


class JobDir:
    def __init__(self, root: Path, lease: TaskLease) -> None:
        private_dir(root)
        self.path = root / f"{lease.task_id}.{lease.attempt}"
        shutil.rmtree(self.path, ignore_errors=True)
        private_dir(self.path)
        self.work = private_dir(self.path / "work")
        self.env_file = self.path / "env"
        self.script = self.path / "job.sh"
        self.output = self.path / "output.log"
        self._offset = 0
        self._pending = b""

    def write(self, command: Sequence[str], env: dict[str, str]) -> None:
        """The 0600 ``env`` file and the batch script that reads and removes it."""
        lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()
                 if _NAME.match(name)]  # fmt: skip
        write_private(self.env_file, ("\n".join(lines) + "\n").encode())
        script = "\n".join([
            "#!/bin/sh",
            "# safeboard agent: one task attempt (its variables are in the env file, 0600)",
            f"env_file={shlex.quote(str(self.env_file))}",
            'if [ ! -r "$env_file" ]; then echo "safeboard: $env_file is gone" >&2; exit 125; fi',
            '. "$env_file"',
            'rm -f "$env_file"',
            f"cd {shlex.quote(str(self.work))} || exit 125",
            f"exec {shlex.join(command)}",
            "",
        ])  # fmt: skip
        write_private(self.script, script.encode())
        self.script.chmod(0o700)

    def tail(self, spool: Spool, *, final: bool = False) -> None:
        """What the job wrote to its output file since the last call, line by line, into
        the spool (redacted there); ``final``: its last line without a newline too."""
        try:
            with self.output.open("rb") as handle:
                handle.seek(self._offset)
                while chunk := handle.read(_READ):
                    self._offset += len(chunk)
                    self._pending += chunk
                    *complete, self._pending = self._pending.split(b"\n")
                    for raw in complete:
                        spool.feed("stdout", raw)
        except FileNotFoundError:
            return
        if final and self._pending:
            spool.feed("stdout", self._pending)
            self._pending = b""

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():  # e.g. a file the job made read-only
            for directory, _, _ in os.walk(self.path):
                os.chmod(directory, 0o700)  # noqa: PTH101
            shutil.rmtree(self.path, ignore_errors=True)
