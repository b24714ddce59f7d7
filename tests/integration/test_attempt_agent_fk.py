"""Migration 0019 on SQLite and PostgreSQL: ``task_attempts.agent_id`` references
``agents.id``. An attempt naming no enrolled agent is refused by the database; one
revision down and up again keeps the attempts (SQLite copies the table in batch mode)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from safeboard.jobs.models import TaskAttemptRow
from safeboard.settings import Settings
from safeboard.storage.migrate import _sqlite_foreign_keys_off, alembic_config, current_revision
from tests.integration.queue_world import build_queue_world


def migrate(engine: sa.Engine, revision: str, *, down: bool) -> None:
    with engine.connect() as conn, _sqlite_foreign_keys_off(conn), conn.begin():
        step = command.downgrade if down else command.upgrade
        step(alembic_config(conn), revision)


def attempt_of(task_id: int, agent_id: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"task_id": task_id, "attempt": 9, "agent_id": agent_id, "gpu_uuids": [],
            "state": "lost", "leased_at": now, "lease_expires_at": now, "reason": ""}  # fmt: skip


def test_an_attempt_names_an_enrolled_agent(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    world = build_queue_world(make_settings, db_url)
    engine = world.services.engine
    try:
        task_id = world.submit().task.id
        lease = world.queue.lease("a", [], [])  # "a": an agent's row (queue_world)
        assert lease is not None
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(TaskAttemptRow).values(attempt_of(task_id, "nobody")))

        migrate(engine, "0018", down=True)  # the revision before 0019
        assert current_revision(engine) not in {None, "0019"}
        with engine.begin() as conn:  # no key before 0019: an unknown agent is taken
            conn.execute(sa.insert(TaskAttemptRow).values(attempt_of(task_id, "nobody")))
            conn.execute(sa.text("DELETE FROM task_attempts WHERE agent_id = 'nobody'"))
        migrate(engine, "head", down=False)
        with engine.connect() as conn:
            kept = conn.execute(sa.text("SELECT task_id, attempt, agent_id FROM task_attempts"))
            assert kept.all() == [(task_id, 1, "a")]
            keys = sa.inspect(conn).get_foreign_keys("task_attempts")
        assert {(tuple(k["constrained_columns"]), k["referred_table"]) for k in keys} >= {
            (("agent_id",), "agents")
        }  # fmt: skip
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(TaskAttemptRow).values(attempt_of(task_id, "nobody")))
    finally:
        world.close()
