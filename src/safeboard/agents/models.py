"""Agent tables: one-time join tokens and enrolled agents.

Neither table holds a secret: the join token's secret and the agent's credential are
stored as SHA-256 hashes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime

__all__ = ["AgentJoinTokenRow", "AgentRow"]


class AgentJoinTokenRow(Base):
    __tablename__ = "agent_join_tokens"

    # The public part of the join string (sbjoin1.<id>.<secret>.<pin>@<url>).
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256, hex
    pool: Mapped[str] = mapped_column(String(64), nullable=False)
    labels: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)  # the audit actor
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    # Set once, in the transaction that makes the agent: a token is used at most once.
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    used_by_agent: Mapped[str | None] = mapped_column(String(16), nullable=True)


class AgentRow(Base):
    __tablename__ = "agents"

    # The public part of the credential sb_agent_<id>_<secret>.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    pool: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    labels: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256, hex
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)  # who minted the token
    join_token: Mapped[str] = mapped_column(String(16), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Written at most once a minute (and when the address changes).
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    hostname: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    # What the agent reported in its last hello: gpus [{index, uuid, model, memory_mib}],
    # cpus, memory_mib.
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    inventory_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
