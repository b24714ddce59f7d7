"""Migration 0014 (tables of safeboard.jobs, run status ``queued``) on a database that
holds runs, on SQLite and PostgreSQL: down to 0013 and up again, the runs and their tags
stay (SQLite copies the runs table to change its check: nothing cascades), the check
follows the revision, and a queued run reads ``killed`` after a downgrade."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command

from safeboard.settings import Settings
from safeboard.storage.migrate import _sqlite_foreign_keys_off, alembic_config, current_revision
from tests.integration.queue_world import build_queue_world


def migrate(engine: sa.Engine, revision: str, *, down: bool) -> None:
    with engine.connect() as conn, _sqlite_foreign_keys_off(conn), conn.begin():
        step = command.downgrade if down else command.upgrade
        step(alembic_config(conn), revision)


def test_down_and_up_keeps_runs(make_settings: Callable[..., Settings], db_url: str) -> None:
    world = build_queue_world(make_settings, db_url)
    engine = world.services.engine
    try:
        finished = world.services.runs.create(world.owner, "p", name="kept", tags={"a": "1"})
        queued = world.submit().task.run_id
        migrate(engine, "0013", down=True)
        assert current_revision(engine) == "0013"
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, status FROM runs")).all())
            tags = conn.execute(sa.text("SELECT run_id, key FROM run_tags")).all()
            tables = set(sa.inspect(conn).get_table_names())
        assert rows == {finished.id: "running", queued: "killed"}
        assert tags == [(finished.id, "a")]
        assert "tasks" not in tables
        assert "task_attempts" not in tables
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'queued'"))
        migrate(engine, "head", down=False)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'queued' WHERE id = :i"),
                         {"i": finished.id})  # fmt: skip
            tags = conn.execute(sa.text("SELECT run_id, key FROM run_tags")).all()
        assert tags == [(finished.id, "a")]
    finally:
        world.close()
