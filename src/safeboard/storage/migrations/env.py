"""Alembic environment, run by :mod:`safeboard.storage.migrate` (there is no alembic.ini).

The caller passes an open connection, already inside the one transaction that the whole
upgrade runs in, as ``config.attributes["connection"]``; nothing here commits.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from safeboard.storage.models import Base


def run_migrations_online() -> None:
    """Run the pending migrations on the caller's connection and transaction."""
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through safeboard.storage.migrate, not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # True on both backends: the engine makes SQLite emit BEGIN before DDL too.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
