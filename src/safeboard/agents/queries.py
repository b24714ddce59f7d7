"""Published queries of the agents domain, for the domains above it (jobs: whether the
agent a lease is for still stands; what the enrolled agents offer, to say why a task
waits)."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safeboard.agents.models import AgentRow

__all__ = ["REVOKED", "CurrentTask", "Offer", "is_revoked", "offers"]

REVOKED = (
    "this agent was revoked by an admin: it may not call the server; enroll again with a "
    "new join token if it should"
)

_A = AgentRow.__table__


@dataclass(frozen=True)
class CurrentTask:
    """A live attempt an agent holds, as the jobs domain reports it (the Agents page)."""

    task_id: int
    attempt: int
    project: str
    run_id: str
    state: str
    gpu_uuids: list[str] = field(default_factory=list)


def is_revoked(conn: Connection, agent_id: str) -> bool:
    """Whether an admin revoked ``agent_id``. Reads the agent's row under a share lock
    (PostgreSQL ``FOR SHARE``), so a revocation waits for a lease being made for that
    agent, and a lease made after it sees it. An unknown id is not revoked."""
    query = sa.select(_A.c.revoked_at).where(_A.c.id == agent_id).with_for_update(read=True)
    row = conn.execute(query).first()
    return row is not None and row.revoked_at is not None


@dataclass(frozen=True)
class Offer:
    """What an enrolled agent can take at most: its machine's GPUs and its labels (from
    its join token and its last hello); ``known``: False until its first hello."""

    gpus: int
    labels: frozenset[str]
    known: bool


def offers(conn: Connection) -> list[Offer]:
    """One ``Offer`` for each agent not revoked."""
    query = sa.select(_A.c.labels, _A.c.inventory, _A.c.inventory_at).where(
        _A.c.revoked_at.is_(None)
    )
    found = []
    for labels, inventory, told_at in conn.execute(query):
        told = inventory or {}  # at the join: its labels only; its machine at the hello
        found.append(Offer(len(told.get("gpus") or []),
                           frozenset([*(labels or []), *(told.get("labels") or [])]),
                           known=told_at is not None))  # fmt: skip
    return found
