"""The SQLAlchemy engine: SQLite (WAL, durable commits) or PostgreSQL through psycopg 3.

SQLite connections run in SQLAlchemy's non-legacy transaction mode: the ``sqlite3`` driver
is told never to emit BEGIN itself (it skips it before DDL and SELECT, so DDL would commit
on its own), and an engine event emits BEGIN when SQLAlchemy starts a transaction. That
makes DDL transactional (migrations, R3), SELECTs repeatable and SAVEPOINT nest properly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from safeboard.errors import ConfigError, SafeboardError

__all__ = [
    "BEGIN_IMMEDIATE",
    "BINARY_RESULTS",
    "SUPPORTED_URLS",
    "create_engine",
    "parse_database_url",
    "ping",
    "writer",
]

SUPPORTED_URLS = "sqlite:////path/to/safeboard.db or postgresql+psycopg://user@host:5432/dbname"

# Execution option: on SQLite, start transactions with BEGIN IMMEDIATE, taking the write
# lock up front so that busy_timeout applies instead of failing with SQLITE_BUSY when a
# read transaction later tries to write. Ignored on PostgreSQL.
BEGIN_IMMEDIATE = "safeboard_begin_immediate"

# Execution option: on PostgreSQL, the rows come back in binary format. psycopg asks for
# text by default, and a bytea column then travels and is parsed as hex: twice the bytes,
# and most of the time of reading metric chunks (1,000,000 points: 100 ms against 45 ms).
# Ignored on SQLite, whose values are never text-encoded.
BINARY_RESULTS = "safeboard_binary_results"

SQLITE_BUSY_TIMEOUT_MS = 5000
POSTGRES_CONNECT_TIMEOUT_S = 10
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {"postgresql+psycopg"}
_SQLITE_FILE_MODE = 0o600


def parse_database_url(url: str) -> URL:
    """Parse and check a database URL, or raise ConfigError naming the supported forms."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"cannot parse the database URL: use {SUPPORTED_URLS}") from None
    scheme = parsed.drivername
    if scheme in _SQLITE_DRIVERS:
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(
                f"an in-memory SQLite database would lose every run at exit: use {SUPPORTED_URLS}"
            )
        if parsed.host or parsed.port or parsed.username or parsed.password:
            raise ConfigError(
                "a SQLite URL names a file, not a host: write sqlite:////absolute/path.db "
                "(four slashes for an absolute path)"
            )
        return parsed
    if scheme in _POSTGRES_DRIVERS:
        if not parsed.database:
            raise ConfigError(
                "the PostgreSQL URL names no database: use postgresql+psycopg://user@host/dbname"
            )
        return parsed
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        raise ConfigError(
            f"database URL scheme {scheme!r} is not supported: write postgresql+psycopg:// "
            "(the psycopg 3 driver)"
        )
    raise ConfigError(f"database URL scheme {scheme!r} is not supported: use {SUPPORTED_URLS}")


def create_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; no connection is made until first use. ``busy_timeout_ms``:
    how long a SQLite writer waits for the write lock before SQLITE_BUSY (a 503
    ``database_busy``, storage/faults.py); the setting ``database.sqlite_busy_timeout_ms``."""
    parsed = parse_database_url(url)
    if parsed.drivername in _SQLITE_DRIVERS:
        return _sqlite_engine(parsed, busy_timeout_ms)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        # Without it libpq waits for the OS (minutes) on an unreachable host.
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    engine = sqlalchemy.create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args=connect_args,
        hide_parameters=True,
        json_serializer=_json_text,
    )
    event.listen(engine, "before_cursor_execute", _binary_when_asked)
    return engine


def _binary_when_asked(
    _conn: Connection, cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool
) -> None:
    if context is not None and context.execution_options.get(BINARY_RESULTS):
        from psycopg.pq import Format  # noqa: PLC0415  (PostgreSQL only)

        cursor.format = Format.BINARY


def _json_text(value: Any) -> str:
    """JSON columns store UTF-8 as is: SQLite's JSON paths do not match \\u-escaped keys."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def writer(engine: Engine) -> Engine:
    """The same engine (and pool) for transactions that read and then write: on SQLite they
    take the write lock at BEGIN, so concurrent writers queue (busy_timeout) instead of
    failing with SQLITE_BUSY. Use ``engine.connect()`` for reads and ``writer(engine).begin()``
    for changes."""
    return engine.execution_options(**{BEGIN_IMMEDIATE: True})


def ping(engine: Engine) -> bool:
    """Whether the database answers ``SELECT 1``. Never raises: the health check uses it."""
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1").scalar() == 1
    except (SQLAlchemyError, OSError, SafeboardError):
        return False


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    assert url.database is not None  # checked by parse_database_url  # noqa: S101
    path = url.database
    # hide_parameters: error messages never carry bound values (a password hash, a token).
    engine = sqlalchemy.create_engine(url, hide_parameters=True, json_serializer=_json_text)

    @event.listens_for(engine, "do_connect")
    def _create_private(*_: Any) -> None:
        # Create the file 0600 before SQLite does (it would use 0644 under the usual
        # umask); SQLite gives the -wal and -shm files the same mode. Any failure (say a
        # missing directory) is left to sqlite3.connect, which reports it as a DBAPI error.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _SQLITE_FILE_MODE)
        except OSError:
            return
        os.close(fd)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # No BEGIN from the driver: _begin below emits it, for DDL too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"SQLite cannot use WAL journaling for {path} (it reports {mode!r}): "
                    "put the data directory on a local filesystem"
                )
            # FULL: in WAL mode an acknowledged commit survives power loss (R3); NORMAL
            # would only protect against corruption.
            cursor.execute("PRAGMA synchronous = FULL")
            # Reads of metric chunks through the page cache by mmap: fewer copies (P2).
            cursor.execute("PRAGMA mmap_size = 268435456")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        dbapi_connection = conn.connection.driver_connection
        if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
            # SQLAlchemy restores the driver's legacy mode after an AUTOCOMMIT checkout.
            dbapi_connection.isolation_level = None
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(BEGIN_IMMEDIATE) else "BEGIN")

    return engine
