"""Histograms and text per step (issue 17): ``histograms`` (bucket edges and counts per
run, key and step) and ``step_texts``. Their batches are remembered in ``ingest_batches``
with the metric batches (one namespace of batch ids per run).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table(name: str, *columns: sa.Column[object]) -> None:
    op.create_table(
        name,
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("step", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.Float(precision=53), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f(f"fk_{name}_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", "step", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    _table(
        "histograms",
        sa.Column("total", sa.Float(precision=53), nullable=False),
        sa.Column("edges", sa.LargeBinary(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
    )
    _table("step_texts", sa.Column("text", sa.Text(), nullable=False))


def downgrade() -> None:
    op.drop_table("step_texts")
    op.drop_table("histograms")
