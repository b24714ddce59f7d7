"""The one thing metrics need of runs: whether a principal may act on a run, and in which
project it lives. Metrics sit below runs (which read metric summaries), so they declare
what they need and the runs domain provides it (``runs.access.run_project``), passed in
where ``MetricService`` is built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Connection

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal

__all__ = ["AccessRecheck", "RunGate"]


class RunGate(Protocol):
    def __call__(
        self, conn: Connection, principal: Principal, run_id: str, permission: Permission
    ) -> int:
        """The run's project id once ``principal`` holds ``permission`` on it; NotFound
        ("no such run") otherwise, whether the run is missing or hidden."""
        ...


class AccessRecheck(Protocol):
    def __call__(
        self,
        conn: Connection,
        checks: Sequence[tuple[Principal, int, str]],
        permission: Permission,
    ) -> list[bool]:
        """For each (principal, project id, run id) that passed ``RunGate`` before: whether
        the principal still holds ``permission`` there and the run is still there (not in
        the trash), for all of them in a query or two. False: ask ``RunGate`` again (for the
        answer to give)."""
        ...
