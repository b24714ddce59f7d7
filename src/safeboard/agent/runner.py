"""``safeboard agent run``: hello, then lease tasks with the free GPUs (long-poll) and hand
each to the launcher (launchers/: a child process, ``Attempt`` in attempt.py, or a Slurm
batch job), as many at once as ``max_tasks`` allows.

Ctrl-C or SIGTERM with nothing running stops at once (``_Poll``). With tasks running it
drains: no new lease, running tasks get up to ``drain_timeout`` to
finish, then are stopped (SIGTERM, SIGKILL after the grace period) and reported; a
second Ctrl-C stops them at once. The server unreachable: tasks keep running, calls are
retried with backoff (Retry-After honoured). The agent revoked: its tasks are stopped
and it ends with the server's one line (``AgentRevoked``)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from safeboard.agent.attempt import Controls
from safeboard.agent.connection import client_for
from safeboard.agent.inventory import Gpu, Machine
from safeboard.agent.isolation import TaskUser, jobs_as_root_warning, tasks_as_root_warning
from safeboard.agent.launchers import Launched, Launcher, ProcessLauncher
from safeboard.agent.state import AgentState
from safeboard.client import Client
from safeboard.client.job_models import TaskLease
from safeboard.client.retry import NO_RETRY, RetryPolicy
from safeboard.errors import (
    AgentRevoked,
    ConfigError,
    RateLimited,
    SafeboardError,
    ServiceUnavailable,
    Unauthenticated,
)

__all__ = ["RunOptions", "Runner", "chosen_gpus"]

_BACKOFF = RetryPolicy(base=1.0, cap=30.0)
_JOIN_TICK = 0.2


@dataclass(frozen=True)
class RunOptions:
    gpu_indexes: Sequence[int] | None = None  # None: every GPU of the machine
    labels: Sequence[str] = ()
    max_tasks: int | None = None  # None: one per GPU, or 1 without GPUs
    grace: float = 30.0
    drain_timeout: float = 60.0
    poll: float = 20.0  # each lease request waits this long for a task (at most 25)
    handle_signals: bool = True
    task_user: TaskUser | None = None  # None: tasks run as the agent's own OS user
    launcher: Launcher | None = None  # None: each task a child process (ProcessLauncher)


def chosen_gpus(machine: Machine, indexes: Sequence[int] | None) -> list[Gpu]:
    """The machine's GPUs this agent may hand out (``--gpus 0,1``: by index)."""
    if indexes is None:
        return list(machine.gpus)
    known = {gpu.index: gpu for gpu in machine.gpus}
    missing = [str(i) for i in indexes if i not in known]
    if missing:
        have = ", ".join(str(i) for i in sorted(known)) or "none"
        raise ConfigError(f"--gpus names GPU {', '.join(missing)}, which this machine lacks "
                          f"(its GPUs: {have})")  # fmt: skip
    return [known[i] for i in dict.fromkeys(indexes)]


class Runner:
    def __init__(
        self,
        state: AgentState,
        state_dir: Path,
        options: RunOptions,
        *,
        machine: Machine,
        version: str,
        say: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.state = state
        self.state_dir = state_dir
        self.options = options
        self.machine = machine
        self.version = version
        self.warn = warn
        self.controls = Controls(say=say, grace=options.grace, task_user=options.task_user)
        self.draining = threading.Event()
        self.attempts: list[Launched] = []
        self.launcher = options.launcher or ProcessLauncher()
        self.gpus = chosen_gpus(machine, options.gpu_indexes)
        self.max_tasks = options.max_tasks or max(1, len(self.gpus))
        self._warned = False
        self.failure: SafeboardError | None = None  # what ended leasing, if not a signal

    def say(self, message: str) -> None:
        self.controls.say(message)

    def connect(self) -> Client:
        """A client of the agent's own (one per attempt, one for leasing): retries are the
        agent's, with its own backoff; the insecure warning only once."""
        warn = self.warn if not self._warned else (lambda _: None)
        self._warned = True
        return client_for(self.state.url, credential=self.state.credential,
                          ca_pem=self.state.ca_pem, insecure=self.state.insecure, warn=warn,
                          retry=NO_RETRY)  # fmt: skip

    def stop(self, _signum: int = signal.SIGINT, _frame: FrameType | None = None) -> None:
        """Ctrl-C or SIGTERM: drain; again: stop the running tasks now. (A signal handler:
        it only sets events; the main loop says what happens.)"""
        if not self.draining.is_set():
            self.draining.set()
        else:
            self.controls.hard_stop.set()

    def run(self) -> int:
        if self.options.handle_signals:
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGTERM, self.stop)
        with self.connect() as client:
            hello = client.hello(self.machine.hello(self.version))
            labels = sorted({*hello.labels, *self.options.labels})
            gpus = ", ".join(f"{g.index}" for g in self.gpus) or "none"
            self.say(f"agent {hello.name} ({hello.agent_id}) serving {self.state.url}"
                     f"{self._through()}: GPUs {gpus}, labels {', '.join(labels) or '(none)'}, "
                     f"up to {self.max_tasks} task(s) at once{self._as_whom()}; state in "
                     f"{self.state_dir}; Ctrl-C drains")  # fmt: skip
            warning = None
            if self.options.task_user is None:
                process = self.launcher.name == "process"
                warning = tasks_as_root_warning() if process else jobs_as_root_warning()
            if warning is not None:  # once, when serving: a refusal before stays one line
                self.warn(warning)
            self._serve(client, labels)
        if self.failure is not None:
            self.draining.set()
            self.say(f"cannot lease: {self.failure.message}")
        if self.draining.is_set() and any(a.is_alive() for a in self.attempts):
            self.say(f"draining: no new tasks; running ones get {self.options.drain_timeout:g} s "
                     "to finish (Ctrl-C again: stop them now)")  # fmt: skip
        self._drain()
        if self.controls.revoked.is_set():
            refusal = self.controls.refusal[0] if self.controls.refusal else "revoked"
            raise AgentRevoked(refusal)
        if self.failure is not None:
            raise self.failure
        self.say("agent stopped")
        return 0

    def _through(self) -> str:
        return "" if self.launcher.name == "process" else f" through {self.launcher.name}"

    def _as_whom(self) -> str:
        user = self.options.task_user
        return f" as user {user.name} (uid {user.uid})" if user is not None else ""

    def _serve(self, client: Client, labels: list[str]) -> None:
        failures = 0
        while not self.draining.is_set() and not self.controls.revoked.is_set():
            self.attempts = [a for a in self.attempts if a.is_alive()]
            if len(self.attempts) >= self.max_tasks:
                self.draining.wait(_JOIN_TICK)
                continue
            busy = {uuid for attempt in self.attempts for uuid in attempt.gpus}
            free = [gpu.uuid for gpu in self.gpus if gpu.uuid not in busy]
            poll = _Poll(client, free, labels, wait=min(self.options.poll, 25.0))
            if not poll.answered(give_up=self._stopping_idle):
                return  # Ctrl-C with nothing running: the long-poll is left behind
            try:
                lease = poll.lease()
            except Unauthenticated as exc:
                self.controls.refused(exc)
                return
            except (ServiceUnavailable, RateLimited) as exc:
                failures += 1
                if failures == 1:
                    self.say(f"cannot lease: {exc.message}; running tasks go on, retrying")
                self.draining.wait(_BACKOFF.delay(failures, exc))
                continue
            except SafeboardError as exc:  # not for retrying: drain, then say it
                self.failure = exc
                return
            if failures:
                self.say("the server answers again")
            failures = 0
            if lease is None:
                continue
            if self.draining.is_set():  # answered after Ctrl-C: "no new tasks" holds
                self.say(
                    f"task {lease.task_id} was leased as the agent stopped: not started; "
                    f"it is queued again when its lease lapses ({lease.lease_seconds} s)"
                )
                return
            attempt = self.launcher.launch(lease, connect=self.connect, state=self.state,
                                           state_dir=self.state_dir,
                                           controls=self.controls)  # fmt: skip
            self.attempts.append(attempt)
            attempt.start()

    def _stopping_idle(self) -> bool:
        return self.draining.is_set() and not any(a.is_alive() for a in self.attempts)

    def _drain(self) -> None:
        running = [a for a in self.attempts if a.is_alive()]
        if self.controls.revoked.is_set():
            self.controls.hard_stop.set()
            if running:
                self.say(f"the server refused this agent: stopping {len(running)} task(s)")
        elif running:
            self.say(f"waiting up to {self.options.drain_timeout:g} s for {len(running)} "
                     "running task(s)")  # fmt: skip
        deadline = time.monotonic() + self.options.drain_timeout
        announced = self.controls.hard_stop.is_set()
        while running:
            if time.monotonic() >= deadline and not self.controls.hard_stop.is_set():
                self.say("drain timeout: stopping the running tasks")
                self.controls.hard_stop.set()
            elif self.controls.hard_stop.is_set() and not announced:
                self.say("stopping the running tasks now")
            announced = self.controls.hard_stop.is_set()
            running[0].join(_JOIN_TICK)
            running = [a for a in running if a.is_alive()]


class _Poll:
    """One lease long-poll, in a thread of its own: the main loop keeps listening to
    Ctrl-C meanwhile, so an agent with nothing running stops at once instead of after the
    poll (up to 25 s). A poll left behind ends with the process; the server claims nothing
    for an agent that hung up (``TaskQueue.lease_async``), and a lease answered in the
    instant of the stop lapses and is queued again, as any lease whose answer is lost."""

    def __init__(self, client: Client, free: list[str], labels: list[str], wait: float) -> None:
        self._answer: list[TaskLease | None] = []
        self._error: list[Exception] = []
        self._thread = threading.Thread(target=self._run, args=(client, free, labels, wait),
                                        name="safeboard-agent-lease", daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self, client: Client, free: list[str], labels: list[str], wait: float) -> None:
        try:
            self._answer.append(client.lease(free, labels, wait_seconds=wait))
        except Exception as exc:  # noqa: BLE001  (raised again in the main loop: lease())
            self._error.append(exc)

    def answered(self, give_up: Callable[[], bool]) -> bool:
        """Wait for the answer; False as soon as ``give_up()`` says to stop waiting."""
        while self._thread.is_alive():
            if give_up():
                return False
            self._thread.join(_JOIN_TICK)
        return True

    def lease(self) -> TaskLease | None:
        """The answer: a lease, None (nothing to run), or the call's error raised."""
        if self._error:
            raise self._error[0]
        return self._answer[0]
