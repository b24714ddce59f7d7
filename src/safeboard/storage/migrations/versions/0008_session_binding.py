"""Sessions: ``binding_hash``, the HMAC of a per-session secret that the browser holds in
storage scoped to safeboard's origin (scheme, host and port) and sends with every request
as ``X-Safeboard-Binding``. Cookies ignore ports, so the cookie alone no longer signs
anyone in (auth/binding.py).

Sessions from before this revision have no binding and could never be used again: they
are deleted, and their browsers sign in once more (which also installs the worker that
sends the binding).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM sessions"))
    op.add_column("sessions", sa.Column("binding_hash", sa.String(length=64), nullable=True))
    # SQLite cannot add NOT NULL to a column: batch mode copies the (now empty) table.
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column("binding_hash", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("binding_hash")
