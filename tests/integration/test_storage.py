"""Storage on both backends: migrations, the instance row, health pings, SQLite durability."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.orm import Session

from safeboard.errors import ConfigError
from safeboard.storage import (
    InstanceRow,
    create_engine,
    current_revision,
    ensure_instance,
    head_revision,
    open_database,
    pending_model_changes,
    ping,
    upgrade,
)
from safeboard.tables import Base  # every domain's tables, so the metadata is complete


class _AbortError(Exception):
    """Raised by a test to fail a migration halfway."""


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _create_table_then_abort(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        raise _AbortError


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """The migrations themselves are tested here: every test starts from an empty database
    (``engine`` too, which is made on this ``db_url``)."""
    return empty_db_url


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    built = create_engine(f"sqlite:///{tmp_path / 'safeboard.db'}")
    yield built
    built.dispose()


def test_upgrade_from_empty_creates_schema_and_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) is None
    assert _tables(engine) == set()

    upgrade(engine)
    assert _tables(engine) == {"alembic_version", *Base.metadata.tables}
    assert current_revision(engine) == head_revision()

    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_models_and_migrations_agree(engine: Engine) -> None:
    assert {"users", "sessions", "api_keys", "audit_log"} <= set(Base.metadata.tables)
    upgrade(engine)
    assert pending_model_changes(engine) == []


def test_ensure_instance_is_made_once(engine: Engine) -> None:
    upgrade(engine)
    first = ensure_instance(engine)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert ensure_instance(engine) == first

    with Session(engine) as session:
        row = session.scalars(select(InstanceRow)).one()
    assert row.id == 1
    assert row.instance_id == first
    assert row.created_at.tzinfo is not None  # aware on SQLite too
    assert abs(datetime.now(UTC) - row.created_at) < timedelta(minutes=1)


def test_failed_migration_leaves_nothing_behind(engine: Engine) -> None:
    # Fail after the migration's DDL ran, when Alembic records the new revision.
    def fail_on_stamp(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ALEMBIC_VERSION"):
            raise _AbortError

    event.listen(engine, "before_cursor_execute", fail_on_stamp)
    with pytest.raises(_AbortError):
        upgrade(engine)
    event.remove(engine, "before_cursor_execute", fail_on_stamp)

    assert _tables(engine) == set()  # neither `instance` nor `alembic_version` survived
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_ddl_and_savepoints_are_transactional(engine: Engine) -> None:
    with pytest.raises(_AbortError):
        _create_table_then_abort(engine)
    assert "scratch" not in _tables(engine)

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO scratch VALUES (1)")
        savepoint = conn.begin_nested()
        conn.exec_driver_sql("INSERT INTO scratch VALUES (2)")
        savepoint.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM scratch").scalars().all() == [1]


def test_concurrent_upgrades_serialize(db_url: str) -> None:
    engines = [create_engine(db_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(target: Engine) -> None:
        try:
            upgrade(target)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,), daemon=True) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not any(thread.is_alive() for thread in threads), "upgrades deadlocked"
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for built in engines:
            built.dispose()


def test_ping_answers(engine: Engine) -> None:
    assert ping(engine) is True


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("kind", ["closed-port", "missing-dir"])
def test_ping_is_false_when_unreachable(kind: str, tmp_path: Path) -> None:
    if kind == "closed-port":
        url = f"postgresql+psycopg://nobody:pw@127.0.0.1:{_closed_port()}/nothing"
    else:
        url = f"sqlite:///{tmp_path / 'missing' / 'safeboard.db'}"
    engine = create_engine(url)
    try:
        assert ping(engine) is False
    finally:
        engine.dispose()
    assert not (tmp_path / "missing").exists()


def test_sqlite_pragmas_in_effect(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        values = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,
        "busy_timeout": 5000,
    }


def test_sqlite_files_are_private(tmp_path: Path, sqlite_engine: Engine) -> None:
    path = tmp_path / "safeboard.db"
    assert not path.exists()  # create_engine does no I/O
    upgrade(sqlite_engine)
    ensure_instance(sqlite_engine)
    with sqlite_engine.connect() as conn:  # keeps the -wal and -shm files open
        conn.exec_driver_sql("SELECT 1")
        files = sorted(tmp_path.glob("safeboard.db*"))
        assert [f.name for f in files] == ["safeboard.db", "safeboard.db-shm", "safeboard.db-wal"]
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_sqlite_transactions_survive_autocommit_use(sqlite_engine: Engine) -> None:
    # VACUUM (as a backup would use) needs AUTOCOMMIT; afterwards BEGIN must come back.
    with sqlite_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
    with pytest.raises(_AbortError):
        _create_table_then_abort(sqlite_engine)
    assert "scratch" not in _tables(sqlite_engine)


def test_sqlite_foreign_keys_enforced_after_upgrade(sqlite_engine: Engine) -> None:
    upgrade(sqlite_engine)  # runs with foreign keys off, then restores them
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_unsupported_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"postgresql\+psycopg://"):
        create_engine("mysql://root:secret@localhost/safeboard")


@pytest.mark.parametrize("in_child", [False, True])
def test_a_schema_from_a_newer_safeboard_is_a_one_line_error(db_url: str, in_child: bool) -> None:
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match=r"schema revision 9999, .* newer version") as caught:
        open_database(db_url, in_child=in_child)
    assert "\n" not in str(caught.value)


def test_an_unreachable_database_is_a_one_line_error_from_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    with pytest.raises(ConfigError, match="cannot use database") as caught:
        open_database(url, in_child=True)
    assert "\n" not in str(caught.value)


def test_the_server_migrates_in_a_child_and_never_loads_alembic(db_url: str) -> None:
    """The serving process keeps Alembic (about 10 MiB) out of its memory (P4)."""
    probe = (
        "import json, os, sys\n"
        "from safeboard.storage import open_database\n"
        "engine = open_database(os.environ['PROBE_DB'], in_child=True)\n"
        "with engine.connect() as conn:\n"
        "    version = conn.exec_driver_sql('SELECT version_num FROM alembic_version').scalar()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('alembic'))\n"
        "print(json.dumps({'version': version, 'alembic': loaded}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, "PROBE_DB": db_url},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"version": head_revision(), "alembic": []}


def test_without_fork_the_migrations_run_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform without os.fork still gets a migrated database."""
    monkeypatch.delattr(os, "fork")
    engine = open_database(f"sqlite:///{tmp_path / 'x.db'}", in_child=True)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
