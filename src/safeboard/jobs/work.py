"""What each agent runs now, for the agents domain's list (the Agents page and
``GET /api/v1/agents``): passed to ``AgentService`` by the composition root."""

from __future__ import annotations

from sqlalchemy import Connection

from safeboard.agents.queries import CurrentTask
from safeboard.jobs import repository as tasks
from safeboard.projects import repository as projects

__all__ = ["agents_work"]


def agents_work(conn: Connection) -> dict[str, list[CurrentTask]]:
    """Live attempts (leased, starting, running, cancelling) by agent id."""
    names: dict[int, str] = {}
    work: dict[str, list[CurrentTask]] = {}
    for attempt, project_id, run_id in tasks.live_attempts(conn):
        if project_id not in names:
            found = projects.get(conn, project_id)
            names[project_id] = found.name if found is not None else ""
        work.setdefault(attempt.agent_id, []).append(
            CurrentTask(
                task_id=attempt.task_id,
                attempt=attempt.attempt,
                project=names[project_id],
                run_id=run_id,
                state=attempt.state,
                gpu_uuids=list(attempt.gpu_uuids),
            )
        )
    return work
