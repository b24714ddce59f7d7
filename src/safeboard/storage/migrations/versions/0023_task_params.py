"""Task parameters (issue 16, "Run again"): ``tasks.params``, the parameter overrides that
``safeboard.init(config=...)`` applies inside the task on top of the script's defaults;
``ix_tasks_run_id``, to find a run's task.

Revision ID: 0023
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.create_index("ix_tasks_run_id", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_run_id")
        batch_op.drop_column("params")
