"""The Slurm launcher (``safeboard agent run --launcher slurm``): each leased attempt is a
batch job. The agent runs on a login node; per attempt it fetches the task's code into a
private job directory (slurm_job.py), submits the batch script with ``sbatch``, reports
``running`` (the job id as its pid) once Slurm runs it, streams the job's output file into
the attempt's log (redacted, shipped like a process's output), heartbeats while the job
lives, ``scancel``s it when the server asks (cancel, maximum duration) or the agent stops,
and reports the end Slurm gives it (slurm_cli.py maps the states). A job the scheduler
lost (NODE_FAIL, BOOT_FAIL, PREEMPTED) or that vanished from ``squeue`` and ``sacct`` is
said in the log and left to the lease: the attempt is lost and retried by the task's
policy. docs/agents.md, "Slurm"."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from safeboard.agent.attempt import (
    REPORT_PATIENCE,
    STOPPED_BY_AGENT,
    Attempt,
    Controls,
    task_environment,
)
from safeboard.agent.inventory import Gpu, Machine
from safeboard.agent.launchers.slurm_cli import JobInfo, Outcome, Slurm, SlurmError, outcome_of
from safeboard.agent.launchers.slurm_job import JobDir, SlurmJobOptions, sbatch_arguments
from safeboard.agent.output import Spool
from safeboard.agent.shipper import Shipper
from safeboard.agent.state import AgentState
from safeboard.client import Client
from safeboard.client.config import write_private
from safeboard.client.job_models import TaskLease
from safeboard.errors import ConfigError, Conflict, NotFound, SafeboardError, Unauthenticated

__all__ = ["SlurmAttempt", "SlurmLauncher", "slurm_launcher"]

_TICK = 1.0  # seconds between looks at the job (squeue itself is asked every Slurm.poll)
_VANISHED_AFTER = 3  # looks in a row where neither squeue, scontrol nor sacct knows the job
_EXIT_NOT_SUBMITTED = 126
# Slurm sets these from --gres; the lease's GPU ids are the partition's, not devices.
_SLURM_SETS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


@dataclass
class _Watch:
    """What ``_watch_job`` keeps between its looks at the job."""

    next_beat: float
    failures: int = 0  # heartbeats failed in a row
    missing: int = 0  # looks in a row that found the job nowhere
    running: bool = False  # `running` reported
    silent: bool = False  # Slurm's silence already said
    taken: bool = False  # the server took the attempt away: nothing to report


class SlurmLauncher:
    name = "slurm"

    def __init__(self, slurm: Slurm, options: SlurmJobOptions, job_root: Path | None) -> None:
        self.slurm = slurm
        self.options = options
        self.job_root = job_root  # None: <state dir>/slurm-jobs

    def launch(
        self,
        lease: TaskLease,
        *,
        connect: Callable[[], Client],
        state: AgentState,
        state_dir: Path,
        controls: Controls,
    ) -> SlurmAttempt:
        return SlurmAttempt(lease, connect=connect, state=state, state_dir=state_dir,
                            controls=controls, launcher=self)  # fmt: skip


class SlurmAttempt(Attempt):
    def __init__(
        self,
        lease: TaskLease,
        *,
        connect: Callable[[], Client],
        state: AgentState,
        state_dir: Path,
        controls: Controls,
        launcher: SlurmLauncher,
    ) -> None:
        super().__init__(lease, connect=connect, state=state, state_dir=state_dir,
                         controls=controls)  # fmt: skip
        self.slurm = launcher.slurm
        self.options = launcher.options
        self.root = launcher.job_root or state_dir / "slurm-jobs"
        self.job_id: str | None = None
        self._cancelled = False

    def _run(self, client: Client) -> None:
        if self._report(client, "starting") is None:
            return
        job = JobDir(self.root, self.lease)
        refused: str | None = None
        ended: Outcome | None = None
        try:
            spool = Spool(self.log_path, self.redactor)
            shipper = Shipper(spool, task_id=self.lease.task_id, attempt=self.lease.attempt,
                              connect=self._connect, say=self.controls.say,
                              refused=self.controls.refused, hard_stop=self.controls.hard_stop,
                              label=self.label)  # fmt: skip
            shipper.start()
            try:
                refused = self._code(job.work, spool)
                if refused is None:
                    ended = self._submit(client, job, spool)
            finally:
                spool.close()
        finally:
            job.remove()  # the env file (if the job never read it), code, output: gone
        if refused is None and ended is None:
            shipper.abandon()
            return
        if not self.controls.revoked.is_set():
            shipper.finish(REPORT_PATIENCE)
        if refused is not None:
            self._not_run(client, refused)
        elif ended is not None and ended.kind == "lost":
            self.controls.say(f"{self.label}: {ended.reason}: not reported; its lease lapses, "
                              "the task is retried by its policy")  # fmt: skip
        elif ended is not None:
            self._ended(client, ended)

    def _environment(self, job: JobDir) -> dict[str, str]:
        ca_file = None
        if self._state.ca_pem:
            ca_file = job.path / "ca.pem"
            write_private(ca_file, self._state.ca_pem.encode())
        env = task_environment(self.lease, self._state, ca_file, {})
        for name in _SLURM_SETS:
            env.pop(name, None)
        return env

    def _submit(self, client: Client, job: JobDir, spool: Spool) -> Outcome | None:
        job.write(self.lease.command, self._environment(job))
        try:
            self.job_id = self.slurm.submit(
                sbatch_arguments(self.lease, self.options, job.output), str(job.script)
            )
        except SlurmError as exc:
            spool.write("stderr", f"safeboard agent: the job was not submitted: {exc}")
            self.controls.say(f"{self.label}: not submitted: {exc}")
            return Outcome("exited", exit_code=_EXIT_NOT_SUBMITTED,
                           reason=f"not submitted to Slurm: {exc}")  # fmt: skip
        gpus = f"{len(self.lease.gpus)} GPU(s)" if self.lease.gpus else "no GPUs"
        self.controls.say(f"{self.label}: Slurm job {self.job_id} submitted ({gpus}); output "
                          f"in {self.log_path}")  # fmt: skip
        try:
            return self._watch_job(client, job, spool, self.job_id)
        finally:
            job.tail(spool, final=True)

    def _look(self, job_id: str) -> JobInfo | None:
        """The job's state now: squeue (shared), else scontrol or sacct; None when no
        command knows it; raises SlurmError when Slurm does not answer."""
        state = self.slurm.state(job_id)
        if state is not None and outcome_of(JobInfo(job_id, state)).kind in ("pending", "running"):
            return JobInfo(job_id, state)
        return self.slurm.final(job_id, state)

    def _watch_job(self, client: Client, job: JobDir, spool: Spool, job_id: str) -> Outcome | None:
        """Until the job ends: its output into the spool, heartbeats, the stops asked for.
        The outcome to report, or None when the server took the attempt away."""
        watch = _Watch(next_beat=time.monotonic() + self._interval)
        while True:
            stopping = self.controls.hard_stop.is_set() or self.controls.revoked.is_set()
            if stopping and not self._cancelled:
                self._stopped_by_agent = True
                self._scancel(job_id, "the agent is stopping")
            outcome = self._step(client, spool, job_id, watch)
            if outcome is not None or watch.taken:
                return outcome
            job.tail(spool)
            if time.monotonic() >= watch.next_beat and not self.controls.revoked.is_set():
                self._beat(client, job_id, watch)
                if watch.taken:
                    return None
            time.sleep(_TICK)

    def _step(self, client: Client, spool: Spool, job_id: str, watch: _Watch) -> Outcome | None:
        """One look at the job: its end (exited, lost, vanished), or None while it lives
        (``running`` reported the first time it runs)."""
        try:
            info = self._look(job_id)
        except SlurmError as exc:
            if not watch.silent:
                self.controls.say(f"{self.label}: Slurm does not answer ({exc}); retrying")
            watch.silent = True
            return None
        watch.silent = False
        watch.missing = 0 if info is not None else watch.missing + 1
        if info is None:
            return self._vanished(spool, job_id) if watch.missing >= _VANISHED_AFTER else None
        outcome = outcome_of(info, cancelled_by_us=self._cancelled)
        if outcome.kind == "running" and not watch.running:
            watch.running = True
            self.controls.say(f"{self.label}: Slurm job {job_id} running")
            if self._report(client, "running", pid=int(job_id)) is None:
                self._scancel(job_id, "the server refused it")
                watch.taken = True
            return None
        if outcome.kind == "lost":
            spool.write("stderr", f"safeboard agent: {outcome.reason}; the attempt is lost and "
                        "retried by the task's policy")  # fmt: skip
            with contextlib.suppress(SlurmError):  # no second run of it, whatever Slurm does
                self.slurm.cancel(job_id)
        return outcome if outcome.kind in ("exited", "lost") else None

    def _beat(self, client: Client, job_id: str, watch: _Watch) -> None:
        now = time.monotonic()
        try:
            beat = client.heartbeat(self.lease.task_id, self.lease.attempt)
        except (Conflict, NotFound) as exc:
            self._scancel(job_id, f"taken away by the server ({exc.message})")
            watch.taken = True
            return
        except Unauthenticated as exc:
            self.controls.refused(exc)
            return
        except SafeboardError as exc:
            watch.failures += 1
            if watch.failures == 1:
                self.controls.say(f"{self.label}: heartbeat failed ({exc.message}); the job "
                                  "keeps running, retrying")  # fmt: skip
            watch.next_beat = now + self._backoff.delay(watch.failures, exc)
            return
        watch.failures = 0
        watch.next_beat = now + self._interval
        if beat.cancel and not self._cancelled:
            self._scancel(job_id, "the server asked to stop it")

    def _scancel(self, job_id: str, why: str) -> None:
        self.controls.say(f"{self.label}: {why}: scancel {job_id}")
        try:
            self.slurm.cancel(job_id)
        except SlurmError as exc:  # tried again at the next look
            self.controls.say(f"{self.label}: {exc}")
            return
        self._cancelled = True

    def _vanished(self, spool: Spool, job_id: str) -> Outcome:
        why = f"Slurm job {job_id} vanished: neither squeue, scontrol nor sacct knows it"
        spool.write("stderr", f"safeboard agent: {why}; the attempt is lost and retried by the "
                    "task's policy")  # fmt: skip
        return Outcome("lost", reason=why)

    def _ended(self, client: Client, outcome: Outcome) -> None:
        how = (f"killed by signal {outcome.signal}" if outcome.signal is not None
               else f"exit code {outcome.exit_code}")  # fmt: skip
        reason = outcome.reason
        if self._stopped_by_agent:
            reason = f"{STOPPED_BY_AGENT}; {reason or how}"
        state = None
        if not self.controls.revoked.is_set():
            state = self._report(client, "exited", exit_code=outcome.exit_code,
                                 signal=outcome.signal, reason=reason)  # fmt: skip
        self.controls.say(f"{self.label}: Slurm job {self.job_id} ended: {outcome.reason or how}"
                          + (f": {state}" if state else ": not reported"))  # fmt: skip


def slurm_launcher(
    options: SlurmJobOptions, job_root: Path | None, machine: Machine
) -> tuple[SlurmLauncher, Machine]:
    """The launcher, and the machine the agent says it is: this login node with the
    partition's GPUs (their GRES; ids ``slurm-<partition>-gpu<N>``), so that a task asking
    for N GPUs is leased only while N of them are not held by this agent's jobs. Refused
    with one line where Slurm does not answer."""
    slurm = Slurm()
    slurm.check()
    try:
        count = slurm.gpus(options.partition)
    except SlurmError as exc:
        raise ConfigError(f"--launcher slurm: {exc}") from None
    where = options.partition or "default"
    gpus = tuple(Gpu(i, f"slurm-{where}-gpu{i}", "Slurm GPU", None) for i in range(count))
    return SlurmLauncher(slurm, options, job_root), replace(machine, gpus=gpus, source="slurm")
