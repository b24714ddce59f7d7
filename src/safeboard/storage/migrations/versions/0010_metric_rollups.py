"""Metrics: ``metric_rollups``, multi-resolution summaries of each key's history, so that
a downsampled read costs about the same at 1M and 100M points (P10); the key's summary
gains its first step, the rollups' watermark (``rolled_to``, ``rollup_shift``) and the
widest step range of one of its chunks (``chunk_span``: a read from step s looks at
chunks from s - chunk_span on).

Existing histories are not rolled here: their first read asks the server's roller for
them (metrics/roller.py), and reads stay exact from the raw points meanwhile.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_rollups",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("block", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_step", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.Float(precision=53), nullable=True),
        sa.Column("min_value", sa.Float(precision=53), nullable=True),
        sa.Column("max_value", sa.Float(precision=53), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_metric_rollups_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", "level", "block", name=op.f("pk_metric_rollups")),
    )
    with op.batch_alter_table("metric_summaries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_step", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("rolled_to", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("rollup_shift", sa.SmallInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("chunk_span", sa.BigInteger(), server_default="0", nullable=False)
        )
    summaries = sa.table(
        "metric_summaries",
        sa.column("run_id"),
        sa.column("key"),
        sa.column("first_step"),
        sa.column("chunk_span"),
    )
    chunks = sa.table(
        "metric_chunks",
        sa.column("run_id"),
        sa.column("key"),
        sa.column("first_step"),
        sa.column("last_step"),
    )
    mine = (chunks.c.run_id == summaries.c.run_id) & (chunks.c.key == summaries.c.key)
    first = sa.select(sa.func.min(chunks.c.first_step)).where(mine).scalar_subquery()
    span = (
        sa.select(sa.func.max(chunks.c.last_step - chunks.c.first_step)).where(mine)
    ).scalar_subquery()
    op.get_bind().execute(
        sa.update(summaries).values(
            first_step=sa.func.coalesce(first, 0), chunk_span=sa.func.coalesce(span, 0)
        )
    )
    with op.batch_alter_table("metric_summaries", schema=None) as batch_op:
        batch_op.alter_column("first_step", existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("metric_summaries", schema=None) as batch_op:
        batch_op.drop_column("chunk_span")
        batch_op.drop_column("rollup_shift")
        batch_op.drop_column("rolled_to")
        batch_op.drop_column("first_step")
    op.drop_table("metric_rollups")
