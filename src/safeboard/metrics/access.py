"""The one thing metrics need of runs: whether a principal may act on a run, and in which
project it lives. Metrics sit below runs (which read metric summaries), so they declare
what they need and the runs domain provides it (``runs.access.run_project``), passed in
where ``MetricService`` is built."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Connection

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal

__all__ = ["RunGate"]


class RunGate(Protocol):
    def __call__(
        self, conn: Connection, principal: Principal, run_id: str, permission: Permission
    ) -> int:
        """The run's project id once ``principal`` holds ``permission`` on it; NotFound
        ("no such run") otherwise, whether the run is missing or hidden."""
        ...
