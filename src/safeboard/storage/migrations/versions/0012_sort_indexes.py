"""Runs: an index on ``(project_id, created_at, id)``, the order of a project's run list
by default (newest first, a page at a time), and the order in which a sort by a param
finds the newest run that has it (whether to sort as numbers or as text): without it
each such list sorted all of a project's runs first (10,000 runs: 29 ms of a 70 ms
request on SQLite).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_project_created", ["project_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_project_created")
