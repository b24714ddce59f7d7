"""Trash and retention (issue 18, "Delete, rename, retention"): ``runs.deleted_at`` and
``runs.deleted_by`` (a run in its project's trash: hidden everywhere, purged after the
retention period), ``ix_runs_deleted_at`` (the sweep's walk over the trash), and each
project's retention: ``projects.trash_days`` (purge its trash after so many days; NULL:
the server's ``retention.trash_days``) and ``projects.max_run_age_days`` (move runs older
than so many days to the trash; NULL: never); ``projects.deleted_at``/``deleted_by`` (a
project in the trash with its runs).

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", _TIME, nullable=True))
        batch_op.add_column(sa.Column("deleted_by", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_runs_deleted_at", ["deleted_at"], unique=False)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trash_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_run_age_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", _TIME, nullable=True))
        batch_op.add_column(sa.Column("deleted_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("deleted_by")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("max_run_age_days")
        batch_op.drop_column("trash_days")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_deleted_at")
        batch_op.drop_column("deleted_by")
        batch_op.drop_column("deleted_at")
