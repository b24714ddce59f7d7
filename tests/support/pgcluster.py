"""A PostgreSQL cluster of one test's own, which the test may stop and start again (the
session's cluster in tests/conftest.py is shared by every test and must stay up)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    _PG_USER,
    PostgresServer,
    _postgres_bindir,
    _run,
    _start,
)

__all__ = ["OwnCluster", "own_cluster"]


@dataclass
class OwnCluster:
    server: PostgresServer
    bindir: Path
    root: Path
    data: Path

    def stop(self) -> None:
        """Stop it as an operator would (fast: open connections are closed)."""
        stopped = self._ctl("stop", "-m", "fast", "-w")
        assert stopped.returncode == 0, stopped.stderr

    def start(self) -> None:
        """Start it again on the same port."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.server.port} "
            f"-c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = self.root / "postgres.log"
        started = self._ctl("start", "-w", "-l", str(log), "-o", options)
        assert started.returncode == 0, started.stderr + log.read_text(errors="replace")[-2000:]

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bindir / "pg_ctl"), args[0], "-D", str(self.data), *args[1:]],
                    cwd=self.root)  # fmt: skip


@contextmanager
def own_cluster() -> Iterator[OwnCluster]:
    bindir = _postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="safeboard-own-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, user=_PG_USER, group=_PG_USER)
        password = secrets.token_urlsafe(24)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, user=_PG_USER, group=_PG_USER)
        data = root / "data"
        init = _run([str(bindir / "initdb"), f"--pgdata={data}", f"--username={_PG_USER}",
                     f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                     "--locale=C", "--no-sync"], cwd=root)  # fmt: skip
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}", pytrace=False)
        pwfile.unlink()
        cluster = OwnCluster(_start(bindir, root, data, password), bindir, root, data)
        try:
            yield cluster
        finally:
            _run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"],
                 cwd=root)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
