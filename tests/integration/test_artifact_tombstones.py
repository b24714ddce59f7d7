"""410-or-404 for an artifact id comes from the artifacts' own record of the uploads the
server expired (``artifact_tombstones``), not from the audit log: an expired upload still
answers 410 Gone when its audit entry is not there, an audit entry alone makes no 410,
and the migration records the uploads expired before it (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from safeboard.artifacts import repository as artifacts
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.audit.models import AuditRow
from safeboard.auth.permissions import Role
from safeboard.ids import new_id
from safeboard.settings import Settings
from safeboard.storage import create_engine, pending_model_changes, upgrade
from safeboard.storage.migrate import alembic_config
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import HOURS, later, partial, project_run
from tests.integration.test_artifacts import as_user, put, service

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(
        make_settings,
        db_url,
        artifacts={"max_file_bytes": 1_000_000, "incomplete_upload_hours": HOURS},
    )
    built.user("admin", Role.ADMIN)
    built.user("olga")
    built.user("mallory")
    yield built
    await built.close()


async def test_an_expired_upload_is_gone_without_its_audit_entry(world: World) -> None:
    """The audit log is evidence, not state: with the expiry's entry not there (an audit
    log moved elsewhere, say), the artifacts' own record still says 410."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    stale = await partial(olga, run_id, 500_000, 1000, "a.bin")
    later(world, HOURS + 1)
    assert service(world).expire_idle_uploads() == 1
    with world.services.engine.begin() as conn:
        conn.execute(sa.delete(AuditRow).where(AuditRow.action == AuditAction.ARTIFACT_EXPIRED))
    answer = await put(olga, stale, b"x" * 10, 1000)
    assert (answer.status_code, answer.json()["error"]["code"]) == (410, "gone")
    # Someone who cannot write the run learns nothing: 404, as for any unknown id.
    answer = await put(as_user(world, "mallory"), stale, b"x" * 10, 1000)
    assert answer.status_code == 404


async def test_an_audit_entry_alone_makes_no_gone(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    never_expired = new_id()
    with world.services.engine.begin() as conn:
        audit.append(
            conn, action=AuditAction.ARTIFACT_EXPIRED, actor="system:test",
            target=f"artifact:{never_expired}", detail={"run": run_id},
        )  # fmt: skip
    answer = await put(olga, never_expired, b"x" * 10, 0)
    assert answer.status_code == 404


def test_the_migration_records_uploads_expired_before_it(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        with engine.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), "0008")
        tables = sa.MetaData()
        tables.reflect(engine, only=["projects", "runs"])
        with engine.begin() as conn:
            conn.execute(
                sa.insert(tables.tables["projects"]),
                {"id": 1, "name": "p", "description": "", "created_at": at},
            )
            conn.execute(
                sa.insert(tables.tables["runs"]),
                {"id": "r" * 32, "project_id": 1, "name": "r", "status": "running",
                 "params": {}, "system": {}, "notes": "", "created_at": at},
            )  # fmt: skip
            for artifact_id, run_id in (("a" * 32, "r" * 32), ("b" * 32, "gone" * 8)):
                audit.append(
                    conn, action=AuditAction.ARTIFACT_EXPIRED, actor="system:expiry",
                    target=f"artifact:{artifact_id}", detail={"run": run_id},
                )  # fmt: skip
        upgrade(engine)
        with engine.connect() as conn:
            assert artifacts.expired_run(conn, "a" * 32) == "r" * 32
            assert artifacts.expired_run(conn, "b" * 32) is None  # its run is gone
        assert pending_model_changes(engine) == []
    finally:
        engine.dispose()
