"""Queued jobs: ``tasks`` and ``task_attempts`` (safeboard.jobs), and the run status
``queued`` (the run a task gets at submit, until an agent starts it).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = ("queued", "leased", "starting", "running", "cancelling", "succeeded", "failed",
           "cancelled", "lost")  # fmt: skip
_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in _STATES))
_RUNS_BEFORE = "status IN ('running', 'finished', 'failed', 'killed')"
_RUNS_AFTER = "status IN ('queued', 'running', 'finished', 'failed', 'killed')"
_TASK_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", _TASK_ID, nullable=False, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=True),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("max_seconds", sa.Integer(), nullable=True),
        sa.Column("max_lost_retries", sa.Integer(), nullable=False),
        sa.Column("retry_on_failure", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cancel_requested_by", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_of", _TASK_ID, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_STATE_CHECK, name=op.f("ck_tasks_state")),
        sa.CheckConstraint("gpus >= 0", name=op.f("ck_tasks_gpus")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_tasks_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_tasks_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by"],
            ["users.id"],
            name=op.f("fk_tasks_submitted_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["retry_of"], ["tasks.id"], name=op.f("fk_tasks_retry_of_tasks"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_state_priority", ["state", "priority", "id"], unique=False)
        batch_op.create_index("ix_tasks_project_id", ["project_id", "id"], unique=False)
    op.create_table(
        "task_attempts",
        sa.Column("task_id", _TASK_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("gpu_uuids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("leased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("signal", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint(_STATE_CHECK, name=op.f("ck_task_attempts_state")),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_attempts_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "attempt", name=op.f("pk_task_attempts")),
    )
    with op.batch_alter_table("task_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_attempts_state_lease", ["state", "lease_expires_at"], unique=False
        )
        batch_op.create_index("ix_task_attempts_agent_state", ["agent_id", "state"], unique=False)
    _runs_check(_RUNS_AFTER)


def downgrade() -> None:
    op.execute("UPDATE runs SET status = 'killed' WHERE status = 'queued'")
    _runs_check(_RUNS_BEFORE)
    op.drop_table("task_attempts")
    op.drop_table("tasks")


def _runs_check(condition: str) -> None:
    """Replace the runs' status check (SQLite: batch mode copies the table; its reflected
    copy carries no CHECK, so the new one is the only one)."""
    with op.batch_alter_table("runs", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch_op.create_check_constraint("status", condition)
