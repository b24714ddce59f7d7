"""Artifacts: ``updated_at``, the last activity of an upload, so that one left unfinished
expires after ``artifacts.incomplete_upload_hours`` on every replica and across restarts.

Existing rows get their ``ready_at`` if finished, else their ``created_at``: an upload
begun before this revision counts as idle since its declaration (its last request is not
recorded anywhere), so one abandoned long ago expires at the first sweep after the upgrade.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text("UPDATE artifacts SET updated_at = COALESCE(ready_at, created_at)"))
    # SQLite cannot add NOT NULL to a column: batch mode copies the table (the constraints
    # and indexes come along; migrations run with foreign keys off, see storage/migrate.py).
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.alter_column(
            "updated_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index("ix_artifacts_state_updated", ["state", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_state_updated")
        batch_op.drop_column("updated_at")
