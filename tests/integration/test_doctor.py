"""``safeboard doctor`` (issue 18): each check produces its finding on an installation made
to have it, and a fresh one has none above info; on SQLite and PostgreSQL where the
database is concerned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from safeboard.auth.permissions import Role, Scope
from safeboard.doctor import Finding, Severity, examine
from safeboard.doctor.database import database_checks
from safeboard.doctor.network import network_checks
from safeboard.server.certificates import prepare_tls
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.integration.identity_world import World, build_world
from tests.support.schema import migrate

pytestmark = pytest.mark.anyio


def worst(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), default=Severity.OK)


def found(findings: list[Finding], check: str, severity: Severity) -> Finding:
    matching = [f for f in findings if f.check == check and f.severity is severity]
    assert matching, f"no {severity.label} {check} in {findings}"
    assert all(f.fix for f in matching if f.severity >= Severity.WARNING)  # each says its fix
    return matching[0]


@pytest.fixture
def installed(make_settings: Callable[..., Settings]) -> Settings:
    """A data directory as after `safeboard db upgrade`: secrets, a migrated SQLite."""
    settings = make_settings()
    engine = create_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    return settings


def test_a_fresh_installation_has_nothing_above_info(installed: Settings) -> None:
    findings = list(examine(installed.data_dir))
    assert worst(findings) <= Severity.INFO, findings
    assert {"files.data_dir", "files.modes", "secrets.strength", "database.migrations"} <= {
        f.check for f in findings
    }


def test_open_modes_are_errors(installed: Settings) -> None:
    data_dir = installed.data_dir
    (data_dir / "secrets.toml").chmod(0o644)
    found(list(examine(data_dir)), "files.modes", Severity.ERROR)
    data_dir.chmod(0o755)
    try:
        found(list(examine(data_dir)), "files.data_dir", Severity.ERROR)
    finally:
        data_dir.chmod(0o700)


def test_a_weak_secret_is_named(installed: Settings) -> None:
    path = installed.data_dir / "secrets.toml"
    path.write_text(path.read_text().replace("signing_key = ", 'signing_key = "short"\n#', 1))
    findings = list(examine(installed.data_dir))
    assert "signing_key" in found(findings, "secrets.strength", Severity.ERROR).message
    found(findings, "settings", Severity.ERROR)  # the server would not start either


def test_tls_expiry_and_names(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(tls={"enabled": True})
    prepare_tls(settings)
    now = datetime.now(UTC)
    assert worst(list(network_checks(settings, now))) <= Severity.INFO
    found(list(network_checks(settings, now + timedelta(days=70))), "tls.expiry", Severity.WARNING)
    found(list(network_checks(settings, now + timedelta(days=91))), "tls.expiry", Severity.ERROR)
    elsewhere = make_settings(
        tls={"enabled": True}, server={"public_url": "https://ml.example.com"}
    )
    names = found(list(network_checks(elsewhere, now)), "tls.names", Severity.ERROR)
    assert "ml.example.com" in names.message


def test_exposure(make_settings: Callable[..., Settings]) -> None:
    everyone = make_settings(
        server={"host": "0.0.0.0", "behind_proxy": ["10.0.0.0/8"]}, tls={"enabled": False}
    )
    findings = list(network_checks(everyone))
    found(findings, "exposure.proxy", Severity.WARNING)
    found(findings, "exposure.bind", Severity.WARNING)  # plain HTTP off loopback
    found(findings, "tls.hsts", Severity.WARNING)  # the proxy must send it
    tls = make_settings(server={"host": "0.0.0.0"})
    found(list(network_checks(tls)), "exposure.bind", Severity.INFO)


def test_an_unreachable_or_unmigrated_database(tmp_path: Path) -> None:
    gone = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        found(list(database_checks(gone)), "database.reachable", Severity.ERROR)
    finally:
        gone.dispose()
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        found(list(database_checks(empty)), "database.migrations", Severity.WARNING)
    finally:
        empty.dispose()


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    yield built
    await built.close()


async def test_accounts_keys_and_agents(world: World) -> None:
    engine = world.services.engine
    now = datetime.now(UTC)
    assert worst(list(database_checks(engine, now))) <= Severity.INFO
    world.user("root2", Role.ADMIN, password=None)
    admin = found(list(database_checks(engine, now)), "accounts.admin_password", Severity.INFO)
    assert "root2" in admin.message
    world.key("admin", Scope.WRITE, never_expires=True)
    found(list(database_checks(engine, now)), "keys.never_expire", Severity.WARNING)
    world.key("admin", Scope.READ, days=365)
    later = list(database_checks(engine, now + timedelta(days=100)))
    found(later, "keys.unused", Severity.WARNING)
    world.agent()
    found(list(database_checks(engine, now)), "agents", Severity.OK)
    silent = list(database_checks(engine, now + timedelta(days=2)))
    found(silent, "agents.silent", Severity.WARNING)


async def test_clock_skew_with_postgresql(world: World) -> None:
    engine = world.services.engine
    checks = {f.check for f in database_checks(engine)}
    if engine.dialect.name != "postgresql":
        assert "database.clock" not in checks  # SQLite: one machine, one clock
        return
    skewed = list(database_checks(engine, datetime.now(UTC) + timedelta(seconds=30)))
    found(skewed, "database.clock", Severity.WARNING)


def test_the_command_exit_code_and_json(installed: Settings) -> None:
    env = {**os.environ, "SAFEBOARD_DATA_DIR": str(installed.data_dir)}

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "safeboard", "doctor", *args], env=env,
                              capture_output=True, text=True, check=False, timeout=60)  # fmt: skip

    clean = doctor()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (installed.data_dir / "secrets.toml").chmod(0o640)
    text = doctor()
    assert text.returncode == 1
    assert "error   files.modes" in text.stdout
    assert "fix: chmod 600" in text.stdout
    lines = [json.loads(line) for line in doctor("--json", "--all").stdout.splitlines()]
    assert {"check", "severity", "message", "fix"} == set(lines[0])
    assert any(line["severity"] == "ok" for line in lines)
    assert doctor("--fail-on", "error").returncode == 1
    (installed.data_dir / "secrets.toml").chmod(0o600)
    engine = sa.create_engine(installed.database_url)
    with engine.begin() as conn:  # an admin without a password: info only
        conn.execute(sa.text("UPDATE users SET password_hash = NULL"))
    engine.dispose()
    assert doctor("--fail-on", "warning").returncode == 0
