"""A foreign key from ``task_attempts.agent_id`` to ``agents.id``: an attempt names an
enrolled agent (agents are revoked, never deleted, so nothing cascades). SQLite: batch
mode (the table is copied).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "fk_task_attempts_agent_id_agents"


def upgrade() -> None:
    with op.batch_alter_table("task_attempts", schema=None) as batch_op:
        batch_op.create_foreign_key(op.f(_NAME), "agents", ["agent_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("task_attempts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_="foreignkey")
