"""How the agent runs a leased attempt (``safeboard agent run --launcher``): ``process``
(attempt.py: a child process on this machine, the default) or ``slurm`` (slurm.py: a
Slurm batch job submitted from a login node). The runner leases tasks the same way for
both and hands each lease to its launcher, which gives back a started thread that ends
when the attempt has been reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from safeboard.agent.attempt import Attempt, Controls
from safeboard.agent.state import AgentState
from safeboard.client import Client
from safeboard.client.job_models import TaskLease

__all__ = ["Launched", "Launcher", "ProcessLauncher"]


class Launched(Protocol):
    """One attempt in flight (a thread): the GPUs it holds until it ends."""

    @property
    def gpus(self) -> tuple[str, ...]: ...

    def start(self) -> None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...


class Launcher(Protocol):
    name: str

    def launch(
        self,
        lease: TaskLease,
        *,
        connect: Callable[[], Client],
        state: AgentState,
        state_dir: Path,
        controls: Controls,
    ) -> Launched: ...


class ProcessLauncher:
    """Each attempt a child process of the agent (attempt.py)."""

    name = "process"

    def launch(
        self,
        lease: TaskLease,
        *,
        connect: Callable[[], Client],
        state: AgentState,
        state_dir: Path,
        controls: Controls,
    ) -> Launched:
        return Attempt(lease, connect=connect, state=state, state_dir=state_dir,
                       controls=controls)  # fmt: skip
