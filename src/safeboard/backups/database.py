"""The database's part of a backup: a consistent copy taken while the server writes, and
its way back into an empty database.

SQLite: the backup API copies every page in one step under one read transaction, so the
copy is the database as one commit left it (in WAL mode the server's writers go on
meanwhile). PostgreSQL: ``pg_dump --format=custom`` (one snapshot) and ``pg_restore``,
found on the PATH or in Debian's ``/usr/lib/postgresql/*/bin``, or named. Their
connection settings go through libpq's environment (``PGPASSWORD`` among them), never
their command line, which every user of the machine can read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from safeboard.errors import ConfigError

__all__ = ["dump", "is_sqlite", "restore_postgres", "sqlite_path", "tool"]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError(f"{url}: an in-memory database cannot be backed up")
    return Path(database)


def tool(name: str, given: Path | None) -> Path:
    """``pg_dump`` or ``pg_restore``: the one named, else the PATH's, else Debian's newest."""
    if given is not None:
        if not os.access(given, os.X_OK):
            raise ConfigError(f"{given}: not an executable {name}")
        return given
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if versions:
        return versions[-1]
    raise ConfigError(
        f"{name} not found: install PostgreSQL's client tools (Debian: postgresql-client), "
        f"or name it with --{name.replace('_', '-')}"
    )


def _libpq_env(url: str) -> dict[str, str]:
    parsed = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    given = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    env.update({k: v for k, v in given.items() if v})
    host = parsed.query.get("host")  # a Unix socket directory: ?host=/run/postgresql
    if isinstance(host, str):
        env["PGHOST"] = host
    return env


def dump(url: str, target: Path, pg_dump: Path | None = None) -> str:
    """Write a consistent copy of the database to ``target`` (0600); its format's name."""
    if is_sqlite(url):
        source = sqlite_path(url)
        if not source.is_file():
            raise ConfigError(f"{source}: no database there (is --data-dir right?)")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with (
            sqlite3.connect(source, timeout=30) as src,
            sqlite3.connect(target) as dst,
        ):
            src.backup(dst)  # every page in one step: one consistent snapshot
        src.close()
        dst.close()
        return "sqlite"
    program = tool("pg_dump", pg_dump)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    done = subprocess.run(  # noqa: S603  (our arguments; the URL goes in the environment)
        [str(program), "--format=custom", "--no-owner", "--no-privileges", "--file", str(target)],
        env=_libpq_env(url), capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise ConfigError(f"pg_dump failed: {done.stderr.strip()[-500:]}")
    return "postgresql"


def restore_postgres(url: str, dump_file: Path, pg_restore: Path | None = None) -> None:
    """Load a ``pg_dump`` copy into the empty database at ``url``."""
    program = tool("pg_restore", pg_restore)
    done = subprocess.run(  # noqa: S603  (our arguments; the URL goes in the environment)
        [str(program), "--no-owner", "--no-privileges", "--exit-on-error",
         "--dbname", make_url(url).database or "", str(dump_file)],
        env=_libpq_env(url), capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise ConfigError(
            f"pg_restore failed (the database must be empty): {done.stderr.strip()[-500:]}"
        )
