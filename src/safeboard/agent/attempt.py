"""One leased attempt of a task, run by the agent: a child process in its own process
group, in a private 0700 directory, with a minimal environment (with ``--task-user``: as
that OS user, in a directory outside the agent's state, isolation.py); its lease renewed by
heartbeat every third of the lease; stopped (SIGTERM to the group, SIGKILL after the
grace period) when the server says cancel, when the agent stops, or at once when the
server took the attempt away (409). Its stdout and stderr go, line by line and redacted,
to the attempt's log file (agent/output.py), which a shipper thread sends to the server
(agent/shipper.py); what is left is shipped before the exit is reported. docs/agents.md,
"Running tasks" and "Logs"."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeboard.agent.code import EXIT_CODE_REFUSED, prepare_code
from safeboard.agent.isolation import TaskUser, Workspace
from safeboard.agent.output import Spool
from safeboard.agent.redact import Redactor
from safeboard.agent.shipper import Shipper
from safeboard.agent.state import AgentState
from safeboard.client import Client
from safeboard.client.config import private_dir, write_private
from safeboard.client.job_models import PARAMS_ENV, TaskLease, secret_values
from safeboard.client.retry import RetryPolicy
from safeboard.errors import (
    Conflict,
    NotFound,
    RateLimited,
    SafeboardError,
    ServiceUnavailable,
    Unauthenticated,
)

__all__ = ["Attempt", "Controls", "task_environment"]

BASE_VARIABLES = ("PATH", "HOME", "LANG")
REPORT_PATIENCE = 300.0  # seconds a report is retried while the server cannot be reached
_TICK = 0.2  # how often the process and the agent's stop signals are looked at
_EXIT_NOT_FOUND, _EXIT_NOT_RUNNABLE = 127, 126
# The reason of an exit the agent caused by stopping (not the server's cancel, not the task).
STOPPED_BY_AGENT = "stopped by its agent, which was shutting down (Ctrl-C or SIGTERM)"
_READERS_PATIENCE = 5.0  # seconds for the pipes to end once the process group is gone


@dataclass
class Controls:
    """What the runner and its attempts share."""

    say: Callable[[str], None]
    grace: float
    hard_stop: threading.Event = field(default_factory=threading.Event)  # cancel every task
    revoked: threading.Event = field(default_factory=threading.Event)  # the agent is refused
    refusal: list[str] = field(default_factory=list)  # the server's words, when revoked
    task_user: TaskUser | None = None  # --task-user: each task runs as this OS user

    def refused(self, error: Unauthenticated) -> None:
        if not self.revoked.is_set():
            self.refusal.append(error.message)
            self.revoked.set()


def task_environment(
    lease: TaskLease, state: AgentState, ca_file: Path | None, parent: dict[str, str]
) -> dict[str, str]:
    """The child's whole environment: PATH, HOME and LANG of the agent's, the task's own
    variables, its secrets, then what safeboard sets (which neither can replace). Never
    the agent's credential, nor anything else of the agent's environment (an API key...)."""
    env = {name: parent[name] for name in BASE_VARIABLES if name in parent}
    env.update(lease.env)
    env.update(lease.secrets)  # the environment only: never argv, never a line we print
    env.update({
        "SAFEBOARD_URL": state.url,
        "SAFEBOARD_RUN_ID": lease.run_id,
        "SAFEBOARD_TASK_ID": str(lease.task_id),
        "SAFEBOARD_ATTEMPT": str(lease.attempt),
        "CUDA_VISIBLE_DEVICES": ",".join(lease.gpus),
        "NVIDIA_VISIBLE_DEVICES": ",".join(lease.gpus) or "none",
    })  # fmt: skip
    if ca_file is not None:
        env["SAFEBOARD_CA_CERT"] = str(ca_file)
    if lease.task_token:
        env["SAFEBOARD_TASK_TOKEN"] = lease.task_token
    if lease.params:  # "Run again": init(config=...) applies them (sdk/task.py)
        env[PARAMS_ENV] = json.dumps(lease.params, separators=(",", ":"))
    return env


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pid, signum)


class Attempt(threading.Thread):
    """``start()`` runs the attempt to its end in this thread; ``gpus`` are held until
    the thread ends."""

    def __init__(
        self,
        lease: TaskLease,
        *,
        connect: Callable[[], Client],
        state: AgentState,
        state_dir: Path,
        controls: Controls,
        redactor: Redactor | None = None,
    ) -> None:
        """``redactor``: the values taken out of the task's output (default: the task's
        secrets and its task token, ``secret_values``, and the agent's own credential,
        which a task running as the agent's OS user (no ``--task-user``) can read in
        ``agent.json``)."""
        super().__init__(name=f"task-{lease.task_id}.{lease.attempt}", daemon=True)
        self.lease = lease
        self.label = f"task {lease.task_id} attempt {lease.attempt}"
        self._connect = connect
        self._state = state
        self._state_dir = state_dir
        self.controls = controls
        self._interval = max(1.0, lease.lease_seconds / 3)
        self._backoff = RetryPolicy(base=0.5, cap=self._interval, retry_after_cap=60.0)
        self.redactor = (
            redactor
            if redactor is not None
            else Redactor([*secret_values(lease), state.credential])
        )
        # The agent itself stopped the process (drain timeout, a second Ctrl-C): its
        # exit report says so, or the task would read as failed by its own fault.
        self._stopped_by_agent = False

    @property
    def gpus(self) -> tuple[str, ...]:
        return self.lease.gpus

    @property
    def log_path(self) -> Path:
        return self._state_dir / "logs" / f"task-{self.lease.task_id}.{self.lease.attempt}.log"

    def run(self) -> None:
        try:
            with self._connect() as client:
                self._run(client)
        except SafeboardError as exc:  # e.g. the state directory unusable: its fix
            self.controls.say(f"{self.label}: not run: {exc.message}")
        except Exception as exc:  # noqa: BLE001  (one line for the person, never a traceback)
            self.controls.say(f"{self.label}: stopped by an internal error: {exc!r}")

    def _run(self, client: Client) -> None:
        if self._report(client, "starting") is None:
            return
        user = self.controls.task_user
        workspace = self._workspace()
        directory = workspace.work
        refused: str | None = None
        ended: tuple[int | None, int | None, float] | None = None
        try:
            spool = Spool(self.log_path, self.redactor)
            shipper = Shipper(spool, task_id=self.lease.task_id, attempt=self.lease.attempt,
                              connect=self._connect, say=self.controls.say,
                              refused=self.controls.refused, hard_stop=self.controls.hard_stop,
                              label=self.label)  # fmt: skip
            shipper.start()
            try:
                # The code first: the CA below replaces a ca.pem it may hold.
                refused = self._code(directory, spool)
                ca_file = None
                if refused is None and self._state.ca_pem:
                    ca_file = directory / "ca.pem"
                    write_private(ca_file, self._state.ca_pem.encode())
                env = task_environment(self.lease, self._state, ca_file, dict(os.environ))
                if user is not None:
                    env["HOME"] = str(directory)  # not the agent's (root's) home
                    workspace.hand_to(user)
                if refused is None:
                    ended = self._execute(client, directory, env, spool)
            finally:
                spool.close()
        finally:
            workspace.remove()  # before the exit is reported
        if refused is None and ended is None:
            shipper.abandon()
            return
        # The rest of the output first: once the exit is reported the task may be seen as
        # over (``task logs -f`` ends), so its last lines must be there already.
        if not self.controls.revoked.is_set():
            shipper.finish(REPORT_PATIENCE)
        if refused is not None:
            self._not_run(client, refused)
        elif ended is not None:
            self._finish(client, *ended)

    def _workspace(self) -> Workspace:
        """The task's directory: with a task user, outside the state directory (which it
        must not reach); else ``<state>/tasks/<id>.<attempt>``, 0700."""
        name = f"{self.lease.task_id}.{self.lease.attempt}"
        if self.controls.task_user is not None:
            return Workspace.outside(name)
        directory = self._state_dir / "tasks" / name
        private_dir(directory.parent)
        shutil.rmtree(directory, ignore_errors=True)
        private_dir(directory)
        return Workspace(directory, directory)

    def _code(self, directory: Path, spool: Spool) -> str | None:
        """Fetch, check and unpack the task's code into ``directory`` while heartbeats
        keep the lease; why the command cannot run, or None (also without code)."""
        if not self.lease.code_sha256:
            return None
        stop = threading.Event()
        beats = threading.Thread(target=self._beat_until, args=(stop,), daemon=True,
                                 name=f"{self.name}-code-beats")  # fmt: skip
        beats.start()
        try:
            with self._connect() as client:
                refused = prepare_code(client, self.lease, directory, self.controls.hard_stop)
        finally:
            stop.set()
            beats.join()
        if refused is not None:
            spool.write("stderr", f"safeboard agent: {refused}; the command was not run")
            self.controls.say(f"{self.label}: {refused}; the command was not run")
        return refused

    def _beat_until(self, stop: threading.Event) -> None:
        with contextlib.suppress(SafeboardError), self._connect() as client:
            while not stop.wait(self._interval):
                with contextlib.suppress(SafeboardError):  # the fetch will say what is wrong
                    client.heartbeat(self.lease.task_id, self.lease.attempt)

    def _not_run(self, client: Client, refused: str) -> None:
        state = None
        if not self.controls.revoked.is_set():
            state = self._report(client, "exited", exit_code=EXIT_CODE_REFUSED,
                                 reason=f"{refused}; the command was not run")  # fmt: skip
        self.controls.say(f"{self.label}: not run" + (f": {state}" if state else ": not reported"))

    def _execute(
        self, client: Client, cwd: Path, env: dict[str, str], spool: Spool
    ) -> tuple[int | None, int | None, float] | None:
        """Run the process to its end: (exit code, signal, start time) to report, or None
        when there is nothing to report (the attempt was taken away or refused)."""
        command = list(self.lease.command)
        started = time.monotonic()
        user = self.controls.task_user
        as_user: dict[str, Any] = {}
        if user is not None:  # its primary group only: none of root's groups
            as_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
        try:
            process = subprocess.Popen(  # noqa: S603  (the task's argv, no shell)
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, **as_user,
            )  # fmt: skip
        except OSError as exc:
            code = _EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else _EXIT_NOT_RUNNABLE
            spool.write("stderr", f"safeboard agent: cannot start {command[0]}: {exc.strerror}")
            self.controls.say(f"{self.label}: cannot start {command[0]} ({exc.strerror})")
            return code, None, started
        assert process.stdout is not None  # noqa: S101  (PIPE)
        assert process.stderr is not None  # noqa: S101
        readers = [spool.reader("stdout", process.stdout), spool.reader("stderr", process.stderr)]
        try:
            return self._supervise(client, process, started)
        finally:
            self._drain_pipes(process, readers)

    def _supervise(
        self, client: Client, process: subprocess.Popen[Any], started: float
    ) -> tuple[int | None, int | None, float] | None:
        command = list(self.lease.command)
        gpus = ", ".join(self.lease.gpus) or "no GPUs"
        self.controls.say(f"{self.label}: started pid {process.pid} ({gpus}): "
                          f"{shlex.join(command)}; output in {self.log_path}")  # fmt: skip
        if self._report(client, "running", pid=process.pid) is None:
            self.controls.say(f"{self.label}: killing its processes")
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            return None
        taken = self._watch(client, process)
        returncode = process.wait()
        _signal_group(process.pid, signal.SIGKILL)  # what it left behind in its group
        if taken:
            return None
        if returncode < 0:
            return None, -returncode, started
        return returncode, None, started

    def _drain_pipes(self, process: subprocess.Popen[Any], readers: list[threading.Thread]) -> None:
        """The readers reach the pipes' end (the group is gone: they end at once); a
        process that left the group and holds them open is not waited for."""
        give_up = time.monotonic() + _READERS_PATIENCE
        for reader in readers:
            reader.join(max(0.0, give_up - time.monotonic()))
        if any(reader.is_alive() for reader in readers):
            self.controls.say(f"{self.label}: a process outside its group still holds its "
                              "output open; what it writes now is not shipped")  # fmt: skip
        for pipe in (process.stdout, process.stderr):
            if pipe is not None and not any(r.is_alive() for r in readers):
                pipe.close()

    def _watch(self, client: Client, process: subprocess.Popen[Any]) -> bool:
        """Until the process exits: heartbeats, and the stops they or the agent ask for.
        True when the server took the attempt away (the process group was killed)."""
        next_beat = time.monotonic() + self._interval
        failures = 0
        stopped_at: float | None = None
        killed = False
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_TICK)
            if process.returncode is not None:
                return False
            now = time.monotonic()
            stopping = self.controls.hard_stop.is_set() or self.controls.revoked.is_set()
            if stopped_at is None and stopping:
                self._stopped_by_agent = True
                stopped_at = self._terminate(process, "the agent is stopping")
            if stopped_at is not None and not killed and now - stopped_at >= self.controls.grace:
                self.controls.say(f"{self.label}: still running after {self.controls.grace:g} s: "
                                  "SIGKILL")  # fmt: skip
                _signal_group(process.pid, signal.SIGKILL)
                killed = True
            if now < next_beat or self.controls.revoked.is_set():
                continue
            try:
                beat = client.heartbeat(self.lease.task_id, self.lease.attempt)
            except (Conflict, NotFound) as exc:
                self.controls.say(f"{self.label}: taken away by the server ({exc.message}): "
                                  "killing its processes now")  # fmt: skip
                _signal_group(process.pid, signal.SIGKILL)
                return True
            except Unauthenticated as exc:
                self.controls.refused(exc)
                continue
            except SafeboardError as exc:
                failures += 1
                if failures == 1:
                    self.controls.say(f"{self.label}: heartbeat failed ({exc.message}); the "
                                      "task keeps running, retrying")  # fmt: skip
                next_beat = now + self._backoff.delay(failures, exc)
                continue
            if failures:
                self.controls.say(f"{self.label}: heartbeat answered again")
            failures = 0
            next_beat = now + self._interval
            if beat.cancel and stopped_at is None:
                stopped_at = self._terminate(process, "the server asked to stop it")

    def _terminate(self, process: subprocess.Popen[Any], why: str) -> float:
        self.controls.say(f"{self.label}: {why}: SIGTERM to its process group, SIGKILL "
                          f"after {self.controls.grace:g} s")  # fmt: skip
        _signal_group(process.pid, signal.SIGTERM)
        return time.monotonic()

    def _finish(
        self, client: Client, exit_code: int | None, signum: int | None, started: float
    ) -> None:
        how = f"killed by signal {signum}" if signum is not None else f"exit code {exit_code}"
        why = f"{STOPPED_BY_AGENT}; {how}" if self._stopped_by_agent else ""
        state = None
        if not self.controls.revoked.is_set():
            state = self._report(client, "exited", exit_code=exit_code, signal=signum, reason=why)
        took = time.monotonic() - started
        self.controls.say(f"{self.label}: {how} after {took:.1f} s"
                          + (f": {state}" if state else ": not reported"))  # fmt: skip

    def _report(self, client: Client, kind: str, **values: Any) -> str | None:
        """Report an event, retried with backoff (the server's Retry-After honoured) while
        the server cannot be reached; None when it was refused or never got through."""
        give_up = time.monotonic() + REPORT_PATIENCE
        failures = 0
        while True:
            try:
                return client.report_task(self.lease.task_id, self.lease.attempt, kind, **values)
            except (Conflict, NotFound) as exc:
                self.controls.say(f"{self.label}: the server refused '{kind}': {exc.message}")
                return None
            except Unauthenticated as exc:
                self.controls.refused(exc)
                return None
            except (ServiceUnavailable, RateLimited) as exc:
                failures += 1
                if time.monotonic() >= give_up or self.controls.hard_stop.is_set():
                    self.controls.say(f"{self.label}: gave up reporting '{kind}' ({exc.message}); "
                                      "its lease will lapse")  # fmt: skip
                    return None
                if failures == 1:
                    self.controls.say(f"{self.label}: cannot report '{kind}' ({exc.message}); "
                                      "retrying")  # fmt: skip
                self.controls.hard_stop.wait(self._backoff.delay(failures, exc))
            except SafeboardError as exc:
                self.controls.say(f"{self.label}: the server refused '{kind}': {exc.message}")
                return None
