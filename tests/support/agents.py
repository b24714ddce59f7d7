"""Enrolled agents for tests that drive the queue directly with made-up agent ids:
``task_attempts.agent_id`` references ``agents.id`` (migration 0019), so an id must name
an agent's row before a lease can name it. The rows hold no usable credential."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from safeboard.agents.models import AgentRow

__all__ = ["QUEUE_TEST_AGENTS", "add_agents"]

# The ids the queue tests lease with (tests/integration/queue_world.py adds them all).
QUEUE_TEST_AGENTS = (
    "a", "b", "far", "small", "big", "pair", "plain", "rich", "agent-fake-1",
    *(f"a{i}" for i in range(10)), *(f"agent-{i}" for i in range(8)),
)  # fmt: skip


def add_agents(engine: sa.Engine, *ids: str) -> None:
    """Rows in ``agents`` for ``ids`` (those already there are left alone)."""
    with engine.begin() as conn:
        have = set(conn.execute(sa.select(AgentRow.id).where(AgentRow.id.in_(ids))).scalars())
        for agent_id in dict.fromkeys(ids):
            if agent_id in have:
                continue
            conn.execute(
                sa.insert(AgentRow).values(
                    id=agent_id, name=agent_id, pool="test", labels=[], secret_hash="0" * 64,
                    created_at=datetime.now(UTC), created_by="test", join_token="test",
                    version="", hostname="", inventory={},
                )
            )  # fmt: skip
