"""A renamed project's old names (issue 18, "links follow the rename"):
``project_renames`` maps a name a project gave up to the project, so that links and
clients using it are redirected (308) to its current name.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_renames",
        sa.Column("old_name", sa.String(length=100), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("renamed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_renames_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("old_name", name=op.f("pk_project_renames")),
    )
    op.create_index(op.f("ix_project_renames_project_id"), "project_renames", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_project_renames_project_id"), table_name="project_renames")
    op.drop_table("project_renames")
