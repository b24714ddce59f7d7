"""Slurm's commands as the Slurm launcher uses them: ``sbatch --parsable``, ``squeue`` and
``sacct`` with machine-readable output (``--noheader -o``, ``--parsable2``), ``scontrol
show job -o`` for an exit code, ``scancel``; and how a job's state maps onto the task's
(docs/agents.md, "Slurm").

The commands run with a minimal environment: PATH, HOME, LANG and the agent's own
``SLURM_*``/``SBATCH_*`` settings (e.g. ``SLURM_CONF``), never anything else of the
agent's. No secret is ever on their command lines."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Literal

from safeboard.errors import ConfigError

__all__ = ["JobInfo", "Outcome", "Slurm", "SlurmError", "gres_gpus", "outcome_of"]

_TIMEOUT = 60.0  # seconds for one Slurm command
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
            "SUSPENDED", "STOPPED"}  # fmt: skip
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# The scheduler lost the job, not the task's fault: the attempt is lost, retried by policy.
LOST_STATES = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "REVOKED"}
_EXIT_CODE = re.compile(r"\bExitCode=(\d+):(\d+)")
_GPU_GRES = re.compile(r"(?:^|,)gpu(?::[A-Za-z0-9_.-]+)?:(\d+)")


class SlurmError(Exception):
    """A Slurm command failed or could not run; ``str()`` is its one line."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # Slurm's, first word ("CANCELLED by 0" -> "CANCELLED")
    exit_code: int | None = None
    signal: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What a job's state means for the attempt: still ``pending`` or ``running``;
    ``exited`` (report ``exit_code`` or ``signal``, with ``reason``); ``lost`` (the
    scheduler lost it: the lease is left to lapse, the task retried by policy)."""

    kind: Literal["pending", "running", "exited", "lost"]
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""


def outcome_of(job: JobInfo, *, cancelled_by_us: bool = False) -> Outcome:
    """The attempt's outcome for a job state (docs/agents.md, "State mapping")."""
    state, name = job.state, f"Slurm job {job.job_id}"
    if state in _PENDING or state in _RUNNING:
        return Outcome("pending" if state in _PENDING else "running")
    if state in LOST_STATES:
        return Outcome("lost", reason=f"{name} ended {state}")
    if state == "COMPLETED":
        return Outcome("exited", exit_code=job.exit_code or 0)
    stopped = {
        "CANCELLED": (job.signal or 15, "" if cancelled_by_us else f"{name} cancelled outside "
                      "safeboard"),
        "TIMEOUT": (job.signal or 15, f"{name}: time limit (--time) reached"),
        "OUT_OF_MEMORY": (9, f"{name}: out of memory"),
    }.get(state)  # fmt: skip
    if stopped is not None:
        return Outcome("exited", signal=stopped[0], reason=stopped[1])
    # FAILED, DEADLINE, SPECIAL_EXIT and any state this version does not know: failed
    why = "" if state == "FAILED" and not job.signal else f"{name} {state}"
    if job.signal:
        return Outcome("exited", signal=job.signal, reason=why)
    return Outcome("exited", exit_code=job.exit_code or 1, reason=why)


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES (``sinfo -o %G``): ``gpu:2``, ``gpu:a100:4(S:0-1)``."""
    return sum(int(count) for count in _GPU_GRES.findall(gres.split("(", maxsplit=1)[0]))


def _environment(parent: dict[str, str]) -> dict[str, str]:
    keep = {"PATH", "HOME", "LANG"}
    return {k: v for k, v in parent.items()
            if k in keep or k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SACCT_"))}  # fmt: skip


class Slurm:
    """The Slurm commands, with a shared view of the agent's jobs (``jobs``): one
    ``squeue`` per ``poll`` seconds answers every attempt."""

    def __init__(self, poll: float = 2.0, parent: dict[str, str] | None = None) -> None:
        self.poll = poll
        self.env = _environment(dict(os.environ) if parent is None else parent)
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}
        self._seen_at = 0.0
        self.accounting = True  # sacct answers (False: accounting storage is disabled)

    def run(self, *args: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603  (argv, no shell, no secret in it)
                list(args), capture_output=True, text=True, timeout=_TIMEOUT, env=self.env,
                stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise SlurmError(f"{args[0]} is not on PATH: is this a Slurm login node?") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{args[0]} did not answer: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            line = said[-1] if said else f"exit {done.returncode}"
            line = line.removeprefix(f"{args[0]}: ")  # "squeue: fatal: ...": said once
            raise SlurmError(f"{args[0]}: {line}")
        return done.stdout

    def check(self) -> None:
        """Refuse to serve where Slurm does not answer: its one line."""
        try:
            self.run("squeue", "--noheader", "--version")
        except SlurmError as exc:
            raise ConfigError(f"--launcher slurm: {exc}") from None

    def gpus(self, partition: str | None) -> int:
        """GPUs of the partition's nodes (their GRES), 0 where none are configured."""
        args = ["sinfo", "--noheader", "-N", "-o", "%N|%G"]
        if partition:
            args[1:1] = ["-p", partition]
        nodes: dict[str, int] = {}
        for line in self.run(*args).splitlines():
            node, _, gres = line.partition("|")
            nodes[node.strip()] = gres_gpus(gres.strip())
        return sum(nodes.values())

    def submit(self, args: list[str], script: str) -> str:
        """``sbatch --parsable ARGS SCRIPT``: the job id."""
        out = self.run("sbatch", "--parsable", *args, script).strip()
        job_id = out.splitlines()[-1].split(";")[0] if out else ""
        if not job_id.isdigit():
            raise SlurmError(f"sbatch: unexpected answer {out[:80]!r}")
        return job_id

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def state(self, job_id: str) -> str | None:
        """The job's state from the last ``squeue`` (refreshed every ``poll`` seconds); None
        when squeue does not list it (finished long ago, or vanished)."""
        with self._lock:
            if time.monotonic() - self._seen_at >= self.poll:
                out = self.run("squeue", "--me", "--noheader", "--states=all", "-o", "%i|%T")
                self._seen = {}
                for line in out.splitlines():
                    found, _, state = line.strip().partition("|")
                    self._seen[found] = state.split(" ")[0]
                self._seen_at = time.monotonic()
            return self._seen.get(job_id)

    def final(self, job_id: str, state: str | None) -> JobInfo | None:
        """The ended job with its exit code: ``scontrol show job``, else ``sacct``; None
        when neither knows the job (and squeue did not list it: it vanished)."""
        with_code = self._scontrol(job_id) or self._sacct(job_id)
        if with_code is not None:
            return with_code
        return JobInfo(job_id, state) if state else None

    def _scontrol(self, job_id: str) -> JobInfo | None:
        try:
            out = self.run("scontrol", "show", "job", "-o", job_id)
        except SlurmError:
            return None
        found = re.search(r"\bJobState=(\S+)", out)
        if found is None:
            return None
        code = _EXIT_CODE.search(out)
        exit_code, signum = (int(code[1]), int(code[2])) if code else (None, None)
        return JobInfo(job_id, found[1], exit_code, signum or None)

    def _sacct(self, job_id: str) -> JobInfo | None:
        if not self.accounting:
            return None
        try:
            out = self.run("sacct", "-X", "--noheader", "--parsable2", "-j", job_id,
                           "-o", "JobID,State,ExitCode")  # fmt: skip
        except SlurmError as exc:
            if "accounting storage is disabled" in str(exc).lower():
                self.accounting = False
            return None
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[0] == job_id:
                code, _, signum = parts[2].partition(":")
                exit_code = int(code) if code.isdigit() else None
                signal = int(signum) if signum.isdigit() and int(signum) else None
                return JobInfo(job_id, parts[1].split(" ")[0], exit_code, signal)
        return None
