"""Database fixtures shared by every tier: a real PostgreSQL server and a fresh database.

``postgres_server`` starts Debian's PostgreSQL in a temporary directory once per session
(password auth, loopback only). ``db_url`` gives each test a new database at the head
revision (a copy of the schema the migrations made, tests/support/schema.py) on SQLite and
on PostgreSQL, ``empty_db_url`` an empty one (the tests of the migrations); their
PostgreSQL case carries the ``postgres`` marker.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from sqlalchemy import URL, Engine, make_url

from safeboard.storage import create_engine
from tests.support.schema import copy_sqlite_template, postgres_template
from tests.support.scratch import remove_scratch

# scripts/test (and so CI) runs the property tests with "repeatable": the examples are
# derived from each test, so a run fails or passes the same way on every machine. Plain
# pytest explores at random; `--hypothesis-profile=thorough` explores far harder (tests
# that set their own max_examples keep it).
# No deadline: on a shared 2-core runner one slow example is noise, not a failure.
settings.register_profile("repeatable", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=3000, deadline=None, print_blob=True)

# The SDK's system-metrics sampler is on by default; the tests count the points a run logs
# exactly, and one running long enough would find its samples among them. The tests of the
# sampler turn it on themselves (tests/unit/test_system_metrics.py,
# tests/integration/test_system_metrics_spool.py, tests/e2e/test_system_metrics.py).
os.environ["SAFEBOARD_SYSTEM_METRICS"] = "0"

# tests/frameworks need PyTorch, Lightning, transformers and Accelerate, too large for CI
# here: scripts/test-integrations installs them and sets SAFEBOARD_FRAMEWORK_TESTS=1.
collect_ignore = [] if os.environ.get("SAFEBOARD_FRAMEWORK_TESTS") == "1" else ["frameworks"]

_PG_USER = "postgres"  # both the superuser inside the cluster and, as root, the OS user
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class PostgresServer:
    """A running test cluster. ``url(db)`` is a SQLAlchemy URL for one of its databases."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        return URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database, for CREATE DATABASE."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        )


def _postgres_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found via pg_config or "
        "/usr/lib/postgresql/*/bin: run scripts/test, which installs Debian's postgresql package",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool; as root through runuser, since initdb refuses to run as root."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", _PG_USER, "--", *args]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session, in a temporary directory, stopped at the end."""
    bindir = _postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="safeboard-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, user=_PG_USER, group=_PG_USER)
        password = secrets.token_urlsafe(24)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(pwfile, user=_PG_USER, group=_PG_USER)
        data = root / "data"
        init = _run(
            [
                str(bindir / "initdb"),
                f"--pgdata={data}",
                f"--username={_PG_USER}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}", pytrace=False)
        pwfile.unlink()
        server = _start(bindir, root, data, password)
        try:
            yield server
        finally:
            _run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bindir: Path, root: Path, data: Path, password: str) -> PostgresServer:
    log = root / "postgres.log"
    for _ in range(_START_ATTEMPTS):  # another process may take the free port first
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = _run(
            [str(bindir / "pg_ctl"), "start", "-w", "-D", str(data), "-l", str(log), "-o", options],
            cwd=root,
        )
        if started.returncode == 0:
            return PostgresServer("127.0.0.1", port, _PG_USER, password)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
    pytest.fail(f"PostgreSQL did not start:\n{tail}", pytrace=False)


@contextmanager
def fresh_database(
    server: PostgresServer, prefix: str, *, template: str | None = None
) -> Iterator[str]:
    """The URL of a new database on the test cluster, dropped afterwards: empty, or a copy
    of the database ``template``."""
    name = f"{prefix}_{secrets.token_hex(8)}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    with server.admin() as admin:
        admin.execute(create)
    try:
        yield server.url(name)
    finally:
        with server.admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new database at the head revision, once on SQLite and once on
    PostgreSQL: the schema the migrations made, copied (tests/support/schema.py)."""
    if request.param == "sqlite":
        copy_sqlite_template(tmp_path / "safeboard.db")
        yield f"sqlite:///{tmp_path / 'safeboard.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = postgres_template(make_url(server.url("postgres")))
    with fresh_database(server, "test", template=template) as url:
        yield url


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database (no table, no revision), once on SQLite and once
    on PostgreSQL: for the tests of the migrations."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'safeboard.db'}"
        return
    with fresh_database(request.getfixturevalue("postgres_server"), "test") as url:
        yield url


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database (for servers started with it in their settings)."""
    with fresh_database(postgres_server, "e2e") as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine from safeboard's own ``create_engine`` on the test's new database (at the
    head revision)."""
    built = create_engine(db_url)
    try:
        yield built
    finally:
        built.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """This process's scratch directories go with the session (tests/support/scratch.py)."""
    remove_scratch()
