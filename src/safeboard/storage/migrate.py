"""Schema migrations (Alembic, configured in code) and the installation's identity row.

:func:`upgrade` runs every pending migration in one transaction on both backends (R3): a
failing step leaves the schema as it was. Concurrent callers (several server replicas
starting at once) are serialized by a lock, and the later ones find nothing to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from safeboard.errors import ConfigError, DatabaseBusy, SafeboardError
from safeboard.ids import new_id
from safeboard.settings import mask_url_password
from safeboard.storage.engine import BEGIN_IMMEDIATE, SQLITE_BUSY_TIMEOUT_MS, create_engine
from safeboard.storage.faults import classify, is_disk_full
from safeboard.storage.models import Base, InstanceRow

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (about 10 MiB once imported) is imported inside the functions that use it: the
# server runs its migrations in a forked child (open_database(..., in_child=True)), so the
# serving process never loads it (P4).

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "ensure_instance",
    "head_revision",
    "open_database",
    "pending_model_changes",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Key of the PostgreSQL advisory lock held while migrating ("sbmigrat" as an int64).
_MIGRATION_LOCK_KEY = int.from_bytes(b"sbmigrat", "big") - 2**63


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations; ``connection`` is what env.py uses."""
    from alembic.config import Config  # noqa: PLC0415  (kept out of the server)

    config = Config()
    # ConfigParser interpolates '%': escape it in the path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision the packaged migrations lead to."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415  (kept out of the server)

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SafeboardError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415  (kept out of the server)

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the head revision, all in one transaction; a no-op when current."""
    from alembic import command  # noqa: PLC0415  (kept out of the server)

    with engine.connect() as conn, _sqlite_foreign_keys_off(conn):
        # SQLite: take the write lock at BEGIN, so a concurrent writer makes us wait
        # (busy_timeout) instead of failing halfway.
        conn.execution_options(**{BEGIN_IMMEDIATE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            command.upgrade(alembic_config(conn), "head")
            if conn.dialect.name == "sqlite":
                _check_foreign_keys(conn)


def ensure_instance(engine: Engine) -> str:
    """This installation's id, made (random, 128 bits) by the first caller."""
    values = {"id": 1, "instance_id": new_id(), "created_at": datetime.now(UTC)}
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                postgresql.insert(InstanceRow).values(values).on_conflict_do_nothing(),
            )
        else:
            conn.execute(sqlite.insert(InstanceRow).values(values).on_conflict_do_nothing())
        instance_id: str = conn.execute(
            select(InstanceRow.instance_id).where(InstanceRow.id == 1)
        ).scalar_one()
    return instance_id


def pending_model_changes(engine: Engine) -> list[Any]:
    """Differences between the database schema and the models; empty when they agree.

    Only models that have been imported are in ``Base.metadata``: import every domain's
    models before calling this.
    """
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415  (kept out of the server)
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415  (kept out of the server)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite's procedure for schema changes: foreign keys off around the transaction.

    Batch migrations copy a table, drop the old one and rename the copy; with foreign keys
    on, the drop would cascade to or fail on referencing rows. The pragma is a no-op
    inside a transaction, so it is set on the driver connection before BEGIN.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None  # a checked-out connection  # noqa: S101
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        try:
            driver.execute("PRAGMA foreign_keys = ON")
        except Exception:
            conn.invalidate()  # never hand a connection without foreign keys back to the pool
            raise


def _check_foreign_keys(conn: Connection) -> None:
    violations = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if violations:
        tables = sorted({str(row[0]) for row in violations})
        raise SafeboardError(
            f"migration left rows that break foreign keys in {', '.join(tables)}; "
            "the upgrade was rolled back"
        )


def open_database(
    url: str, *, in_child: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> Engine:
    """An engine with the schema at head and the instance row made, ready to serve.

    Every failure on the way (unreachable server, unreadable or foreign file, a schema from
    a newer safeboard) becomes a one-line ConfigError naming the database and the fix.
    ``in_child``: migrate in a forked child process (where fork exists), so that Alembic
    never loads into this one; the server does this, before it starts any thread.
    ``busy_timeout_ms``: SQLite's wait for the write lock (``create_engine``).
    """
    forked = in_child and hasattr(os, "fork")
    if forked:
        _migrate_in_child(url)
    engine = create_engine(url, busy_timeout_ms=busy_timeout_ms)
    try:
        if not forked:
            _migrated(engine, url)
        ensure_instance(engine)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise _unusable(url, exc) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _unusable(url: str, exc: BaseException) -> ConfigError:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    where = make_url(url).database if url.startswith("sqlite") else None
    if is_disk_full(exc, Path(where).parent if where else None):
        return ConfigError(
            f"the disk is full: cannot write database {where or mask_url_password(url)} "
            f"({reason}); free space on it, or move the data directory elsewhere "
            "(--data-dir) or the database (--database-url)"
        )
    fault = classify(exc)
    if fault is not None and isinstance(fault.error, DatabaseBusy):
        return ConfigError(
            f"the database is busy: {where or mask_url_password(url)} ({reason}): another "
            "process held it past database.sqlite_busy_timeout_ms; try again"
        )
    return ConfigError(
        f"cannot use database {mask_url_password(url)}: {reason}; check --database-url, that "
        "the server is up and the file or account is yours"
    )


def _migrated(engine: Engine, url: str) -> None:
    from alembic.util import CommandError  # noqa: PLC0415  (kept out of the server)

    try:
        upgrade(engine)
    except CommandError:
        raise ConfigError(
            f"database {mask_url_password(url)} has schema revision "
            f"{_revision_or_unknown(engine)}, which this safeboard does not know: it was made "
            "by a newer version; upgrade safeboard"
        ) from None


def _migrate_in_child(url: str) -> None:
    """Run the migrations in a forked child; its one-line error, if any, is raised here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: migrate, report, and leave without running any cleanup
        os.close(read_end)
        message = b""
        try:
            engine = create_engine(url)
            try:
                _migrated(engine, url)
            finally:
                engine.dispose()
        except ConfigError as exc:
            message = str(exc).encode()
        except (SQLAlchemyError, OSError) as exc:
            message = str(_unusable(url, exc)).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            message = f"migrating database {mask_url_password(url)} failed: {exc}".encode()
        try:
            os.write(write_end, message or b"ok")
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    reply = b"".join(chunks).decode(errors="replace")
    if reply != "ok":
        raise ConfigError(
            reply or f"migrating the database failed (child exit status {status}); see the log"
        )


def _revision_or_unknown(engine: Engine) -> str:
    try:
        return current_revision(engine) or "none"
    except SQLAlchemyError:
        return "unknown"
