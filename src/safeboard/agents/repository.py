"""Queries of the agents domain, returning plain domain objects (never ORM rows).

Functions take the caller's connection and never commit: the service holds the
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safeboard.agents.models import AgentJoinTokenRow, AgentRow

__all__ = [
    "Agent",
    "JoinToken",
    "consume_token",
    "create_agent",
    "create_token",
    "get_agent",
    "get_token",
    "list_agents",
    "revoke_agent",
    "set_inventory",
    "touch_agent",
]


@dataclass(frozen=True)
class JoinToken:
    id: str
    pool: str
    labels: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by_agent: str | None
    secret_hash: str = field(repr=False)


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    pool: str
    labels: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    last_seen_at: datetime | None
    last_address: str | None
    version: str
    hostname: str
    inventory: dict[str, Any]
    inventory_at: datetime | None
    secret_hash: str = field(repr=False)


def _token(row: Any) -> JoinToken:
    return JoinToken(
        id=row.id,
        pool=row.pool,
        labels=tuple(row.labels or ()),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        used_by_agent=row.used_by_agent,
        secret_hash=row.secret_hash,
    )


def _agent(row: Any) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        pool=row.pool,
        labels=tuple(row.labels or ()),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        last_seen_at=row.last_seen_at,
        last_address=row.last_address,
        version=row.version,
        hostname=row.hostname,
        inventory=dict(row.inventory or {}),
        inventory_at=row.inventory_at,
        secret_hash=row.secret_hash,
    )


_T = AgentJoinTokenRow.__table__
_A = AgentRow.__table__


def create_token(conn: Connection, token: JoinToken) -> None:
    conn.execute(
        sa.insert(AgentJoinTokenRow).values(
            id=token.id,
            secret_hash=token.secret_hash,
            pool=token.pool,
            labels=list(token.labels),
            created_by=token.created_by,
            created_at=token.created_at,
            expires_at=token.expires_at,
        )
    )


def get_token(conn: Connection, token_id: str) -> JoinToken | None:
    row = conn.execute(sa.select(_T).where(_T.c.id == token_id)).first()
    return _token(row) if row else None


def consume_token(conn: Connection, token_id: str, agent_id: str, now: datetime) -> bool:
    """Mark the token used by ``agent_id`` if it is still unused and unexpired; False when
    another enrollment took it first (one conditional UPDATE: on PostgreSQL the loser
    waits for the winner's row lock, then finds ``used_at`` set; on SQLite the write lock
    serialises them)."""
    result = conn.execute(
        sa.update(AgentJoinTokenRow)
        .where(_T.c.id == token_id, _T.c.used_at.is_(None), _T.c.expires_at > now)
        .values(used_at=now, used_by_agent=agent_id)
    )
    return result.rowcount == 1


def create_agent(conn: Connection, agent: Agent, join_token: str) -> None:
    conn.execute(
        sa.insert(AgentRow).values(
            id=agent.id,
            name=agent.name,
            pool=agent.pool,
            labels=list(agent.labels),
            secret_hash=agent.secret_hash,
            created_at=agent.created_at,
            created_by=agent.created_by,
            join_token=join_token,
            version=agent.version,
            hostname=agent.hostname,
            inventory=agent.inventory,
            last_seen_at=agent.last_seen_at,
            last_address=agent.last_address,
        )
    )


def get_agent(conn: Connection, agent_id: str) -> Agent | None:
    row = conn.execute(sa.select(_A).where(_A.c.id == agent_id)).first()
    return _agent(row) if row else None


def list_agents(conn: Connection) -> list[Agent]:
    rows = conn.execute(sa.select(_A).order_by(_A.c.created_at, _A.c.id))
    return [_agent(row) for row in rows]


def revoke_agent(conn: Connection, agent_id: str, now: datetime, actor: str) -> bool:
    """Revoke ``agent_id``; False when it was revoked already (or does not exist)."""
    result = conn.execute(
        sa.update(AgentRow)
        .where(_A.c.id == agent_id, _A.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=actor)
    )
    return result.rowcount == 1


def touch_agent(conn: Connection, agent_id: str, now: datetime, address: str) -> None:
    conn.execute(
        sa.update(AgentRow)
        .where(_A.c.id == agent_id)
        .values(last_seen_at=now, last_address=address)
    )


def set_inventory(
    conn: Connection,
    agent_id: str,
    *,
    hostname: str,
    version: str,
    inventory: dict[str, Any],
    now: datetime,
) -> None:
    conn.execute(
        sa.update(AgentRow)
        .where(_A.c.id == agent_id)
        .values(
            hostname=hostname,
            version=version,
            inventory=inventory,
            inventory_at=now,
        )
    )
