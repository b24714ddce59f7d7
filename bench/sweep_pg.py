"""A throwaway PostgreSQL cluster for bench/sweep.py (the same recipe as the test suite's
``postgres_server`` fixture in tests/conftest.py: initdb in a temporary directory, started
on a free port, run as the ``postgres`` user when this is root)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from procs import free_port

__all__ = ["postgres_cluster"]

_USER = "postgres"


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return found[-1].parent


def _run(args: list[str]) -> None:
    if os.geteuid() == 0:
        args = ["runuser", "-u", _USER, "--", *args]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yields the SQLAlchemy URL of an empty database on a new cluster in a temporary
    directory (its own: the ``postgres`` user must reach it); durable commits (fsync on), as
    a real deployment runs it."""
    root = Path(tempfile.mkdtemp(prefix="safeboard-sweep-pg-"))
    try:
        with _cluster(root) as url:
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _cluster(root: Path) -> Iterator[str]:
    bindir, data = _bindir(), root / "data"
    password = secrets.token_urlsafe(24)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, user=_USER, group=_USER)
        shutil.chown(pwfile, user=_USER, group=_USER)
    initdb = [str(bindir / "initdb"), f"--pgdata={data}", f"--username={_USER}"]
    _run([*initdb, f"--pwfile={pwfile}", "--auth=scram-sha-256", "--locale=C", "-E", "UTF8"])
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
        "-c max_connections=300"
    )
    _run([str(bindir / "pg_ctl"), "start", "-w", "-D", str(data), "-l", str(root / "pg.log"),
          "-o", options])  # fmt: skip
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(host="127.0.0.1", port=port, user=_USER, password=password,
                             dbname="postgres", autocommit=True) as admin:  # fmt: skip
            admin.execute("CREATE DATABASE sweep")
        yield f"postgresql+psycopg://{_USER}:{password}@127.0.0.1:{port}/sweep"
    finally:
        _run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"])
