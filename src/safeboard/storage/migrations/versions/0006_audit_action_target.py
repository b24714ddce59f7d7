"""Audit log: one index on (action, target) in place of the one on action alone, so that
"was artifact X expired?" (an upload answering 410 rather than 404) reads one entry, not
every entry of that action. Queries by action alone use the new index's first column.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action_target", ["action", "target"], unique=False)
        batch_op.drop_index("ix_audit_log_action")


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action", ["action"], unique=False)
        batch_op.drop_index("ix_audit_log_action_target")
