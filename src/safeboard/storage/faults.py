"""Which infrastructure failures are faults of the moment, worth a 503 and another try.

``classify(exc)`` reads the driver's own error codes, not its messages: SQLite's result
code (``sqlite_errorcode``), PostgreSQL's SQLSTATE (psycopg's error classes), the errno of
an ``OSError``. Three causes, each its own code (safeboard/errors.py):

- ``database_unavailable``: PostgreSQL stopped, restarting or unreachable (a connection
  refused or closed by the server, SQLSTATE class 08, 57P01-57P03), SQLite unable to open
  or read its file;
- ``database_busy``: the database not had in time (SQLite's write lock held past the busy
  wait, a pool checkout timed out, a PostgreSQL lock, deadlock or serialization failure);
- ``disk_full``: SQLite's SQLITE_FULL, PostgreSQL's 53100, ENOSPC or EDQUOT from a file
  write (the artifact store).

Anything else is a bug, not a fault: ``None``, and the caller's generic 500 stays.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

from safeboard.datadir import disk_state
from safeboard.errors import DatabaseBusy, DatabaseUnavailable, DiskFull, ServiceUnavailable

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BUSY_RETRY_S",
    "DISK_FULL_ERRNOS",
    "DISK_FULL_RETRY_S",
    "UNAVAILABLE_RETRY_S",
    "Fault",
    "classify",
    "database_busy",
    "database_unavailable",
    "disk_full",
    "is_disk_full",
]

# What a client is asked to wait (Retry-After): a lock passes in moments, a database
# restarts in seconds, a full disk needs an operator.
BUSY_RETRY_S = 1
UNAVAILABLE_RETRY_S = 5
DISK_FULL_RETRY_S = 30

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

# SQLite primary result codes (https://sqlite.org/rescode.html); the extended code's low byte.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_PROTOCOL = 15

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_DISK_FULL = "53100"
_PG_DOWN = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now
_PG_BUSY_CLASSES = frozenset({"40", "53"})  # transaction rollback, insufficient resources
_PG_BUSY = frozenset({"55P03", "57014"})  # lock not available, statement timeout

_REASON_CHARS = 300


@dataclass(frozen=True)
class Fault:
    """The error to answer with and the driver's reason, for the operator's log only."""

    error: ServiceUnavailable
    reason: str


def database_unavailable() -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database is unavailable; retry after {UNAVAILABLE_RETRY_S} s",
        retry_after=UNAVAILABLE_RETRY_S,
    )


def database_busy() -> DatabaseBusy:
    return DatabaseBusy(
        f"the database is busy; retry after {BUSY_RETRY_S} s", retry_after=BUSY_RETRY_S
    )


def disk_full() -> DiskFull:
    return DiskFull(
        f"the server's disk is full; retry after {DISK_FULL_RETRY_S} s "
        "(its operator must free space)",
        retry_after=DISK_FULL_RETRY_S,
    )


def classify(exc: BaseException) -> Fault | None:
    """The fault ``exc`` (or an error it wraps) is, or None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        error = _classify_one(current)
        if error is not None:
            return Fault(error, _reason(current))
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper of a driver error
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def is_disk_full(exc: BaseException, where: Path | None = None) -> bool:
    """Whether ``exc`` is a full disk: said so (SQLITE_FULL, ENOSPC...), or a fault of the
    database while the disk holding ``where`` has no byte left (SQLite says "disk I/O
    error" when it cannot grow its ``-shm`` file)."""
    fault = classify(exc)
    if fault is None:
        return False
    return isinstance(fault.error, DiskFull) or (where is not None and disk_state(where) == "full")


def _classify_one(exc: BaseException) -> ServiceUnavailable | None:
    if isinstance(exc, sqlite3.Error):
        return _sqlite(exc)
    # psycopg's errors come from psycopg, imported by then: none to look for on SQLite (the
    # CLI's local commands start without it, about 0.1 s).
    postgres = sys.modules.get("psycopg")
    if postgres is not None and isinstance(exc, postgres.Error):
        return _postgres(exc)
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection free in time
        return database_busy()
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return database_unavailable()
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return disk_full()
    return None


def _sqlite(exc: sqlite3.Error) -> ServiceUnavailable | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    primary = code & 0xFF
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return database_busy()
    if primary == _SQLITE_FULL:
        return disk_full()
    if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL):
        return database_unavailable()
    return None


def _postgres(exc: psycopg.Error) -> ServiceUnavailable | None:
    import psycopg  # noqa: PLC0415  (imported already: exc is one of its errors)

    state = exc.sqlstate
    if state == _PG_DISK_FULL:
        return disk_full()
    if state is not None and (state[:2] in _PG_BUSY_CLASSES or state in _PG_BUSY):
        return database_busy()
    # No SQLSTATE: the connection failed or broke before the server said anything.
    down = state is None or state.startswith("08") or state in _PG_DOWN
    if down and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return database_unavailable()
    return None


def _reason(exc: BaseException) -> str:
    """The driver's words on one line (never the statement or its parameters)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # the file's path is left to the startup messages
    return text[:_REASON_CHARS]
