"""Artifacts: ``artifact_tombstones``, one row per upload the server expired, so that the
artifacts domain decides 410-or-404 from its own record instead of reading the audit log.

Uploads expired before this revision are recorded from their audit entries
(``artifact.expired``, target ``artifact:<id>``, the run in the detail), where the run
still exists.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tombstones = op.create_table(
        "artifact_tombstones",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_artifact_tombstones_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_tombstones")),
    )
    with op.batch_alter_table("artifact_tombstones", schema=None) as batch_op:
        batch_op.create_index("ix_artifact_tombstones_run", ["run_id"], unique=False)
    _record_earlier_expiries(tombstones)


def _record_earlier_expiries(tombstones: sa.Table) -> None:
    conn = op.get_bind()
    audit = sa.table(
        "audit_log",
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("action", sa.String()),
        sa.column("target", sa.String()),
        sa.column("detail", sa.Text()),
    )
    runs = sa.table("runs", sa.column("id"))
    entries = conn.execute(
        sa.select(audit.c.at, audit.c.target, audit.c.detail)
        .where(audit.c.action == "artifact.expired")
        .order_by(audit.c.at)
    )
    found: dict[str, tuple[str, datetime]] = {}
    for at, target, detail in entries:
        artifact_id = str(target).removeprefix("artifact:")
        run_id = json.loads(detail or "{}").get("run")
        if isinstance(run_id, str) and artifact_id:
            expired_at = at if at.tzinfo else at.replace(tzinfo=UTC)
            found[artifact_id] = (run_id, expired_at)
    if not found:
        return
    existing = set(conn.execute(sa.select(runs.c.id)).scalars())
    rows = [
        {"id": artifact_id, "run_id": run_id, "expired_at": expired_at}
        for artifact_id, (run_id, expired_at) in found.items()
        if run_id in existing
    ]
    if rows:
        conn.execute(sa.insert(tombstones), rows)


def downgrade() -> None:
    with op.batch_alter_table("artifact_tombstones", schema=None) as batch_op:
        batch_op.drop_index("ix_artifact_tombstones_run")
    op.drop_table("artifact_tombstones")
