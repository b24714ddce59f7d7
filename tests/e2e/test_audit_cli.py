"""``safeboard audit list | verify`` as a subprocess on a real data directory (S16)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from safeboard.audit import service
from safeboard.audit.events import AuditAction
from safeboard.storage import create_engine
from tests.e2e.conftest import cli_env, run_cli

pytestmark = pytest.mark.e2e

# Until the group is registered in safeboard/cli/__init__.py, add it in the child process
# and run the real entry point (same error handling and exit codes as `python -m safeboard`).
_ENTRY = (
    "from safeboard.cli import cli, main; from safeboard.cli.audit_cmd import audit; "
    "cli.add_command(audit); main()"
)


def audit_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, "audit", *args],
        env={**cli_env(data_dir), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory migrated by the CLI, holding three entries."""
    directory = tmp_path / "data"
    upgraded = run_cli("db", "upgrade", data_dir=directory)
    assert upgraded.returncode == 0, upgraded.stderr
    engine = create_engine(f"sqlite:///{directory / 'safeboard.db'}")
    try:
        service.record(
            engine,
            action=AuditAction.LOGIN_OK,
            actor="user:alice",
            target="user:alice",
            address="127.0.0.1",
            detail={"via": "password"},
        )
        service.record(
            engine,
            action=AuditAction.LOGIN_FAILED,
            actor="anonymous",
            target="user:\x1b[31mroot[/red]",
            outcome="denied",
        )
        service.record(engine, action=AuditAction.LOGOUT, actor="user:alice")
    finally:
        engine.dispose()
    return directory


def test_verify_passes_then_fails_after_a_row_is_edited_by_hand(data_dir: Path) -> None:
    intact = audit_cli(data_dir, "verify")
    assert intact.returncode == 0, intact.stderr
    head = json.loads(audit_cli(data_dir, "list", "--json").stdout.splitlines()[-1])["hash"]
    assert intact.stdout.strip() == f"audit log intact: 3 entries, head #3 {head}"

    with sqlite3.connect(data_dir / "safeboard.db") as db:
        db.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE id = 2")
    db.close()

    tampered = audit_cli(data_dir, "verify")
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("audit log TAMPERED: 1 problem in 3 entries")
    assert "#2: edited (its content no longer matches its hash)" in tampered.stdout


def test_list_json_and_table(data_dir: Path) -> None:
    listed = audit_cli(data_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["login.ok", "login.failed", "logout"]
    assert rows[0]["detail"] == {"via": "password"}
    assert rows[1]["prev_hash"] == rows[0]["hash"]

    failed = audit_cli(data_dir, "list", "--json", "--action", "login.failed")
    assert [json.loads(line)["id"] for line in failed.stdout.splitlines()] == [2]
    newest = audit_cli(data_dir, "list", "--json", "--limit", "2", "--since", "1h")
    assert [json.loads(line)["id"] for line in newest.stdout.splitlines()] == [2, 3]
    future = audit_cli(data_dir, "list", "--since", "2999-01-01T00:00:00")
    assert (future.returncode, future.stdout.strip()) == (0, "no audit entries match")

    table = audit_cli(data_dir, "list")
    assert table.returncode == 0, table.stderr
    assert "login.failed" in table.stdout
    # A recorded value cannot drive the terminal or rich's markup.
    assert "\x1b" not in table.stdout
    assert "\\x1b" in table.stdout
    assert "[/red]" in table.stdout


def test_bad_since_is_a_usage_error(data_dir: Path) -> None:
    bad = audit_cli(data_dir, "list", "--since", "yesterday")
    assert bad.returncode == 2
    assert "neither ISO-8601 nor an age" in bad.stderr


def test_a_database_without_the_audit_log_is_refused(tmp_path: Path) -> None:
    for args in (("verify",), ("list",)):
        result = audit_cli(tmp_path / "fresh", *args)
        assert result.returncode == 2
        assert result.stderr.strip().endswith("run safeboard db upgrade or start the server first")
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "fresh" / "safeboard.db").exists()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://auditor:hunter2@127.0.0.1:1/safeboard"
    result = audit_cli(tmp_path / "data", "verify", "--database-url", url)
    assert result.returncode == 2
    assert result.stderr.startswith("safeboard: error: cannot use database")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr
