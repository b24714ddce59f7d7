"""The identity story end to end on PostgreSQL: a real server process and the real CLI
against the test cluster (S4, S8, S16)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

Start = Callable[..., ServerProcess]


def test_sign_in_keys_and_audit_on_postgresql(
    server_factory: Start, pg_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    # The server and the CLI both read the database URL from the data directory's settings.
    (data_dir / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    server = server_factory()
    assert server.data_dir == data_dir
    banner = "\n".join(server.banner)
    assert "postgresql+psycopg://" in banner
    password = pg_url.split(":")[2].split("@", maxsplit=1)[0]
    assert password not in server.log  # the URL's password is masked everywhere

    link = (data_dir / "login-link").read_text().strip()
    with server.client() as client:
        signed_in = client.post("/api/v1/auth/startup", json={"token": link.split("#token=")[1]})
        assert signed_in.status_code == 200
        reused = client.post("/api/v1/auth/startup", json={"token": link.split("#token=")[1]})
        assert reused.status_code == 401

    made = run_cli("key", "create", "--name", "pg", data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with server.client() as client:
        assert client.get("/api/v1/auth/session", headers=headers).status_code == 200
        revoked = run_cli("key", "revoke", token.split("_")[1], data_dir=data_dir)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        # The server trusts a key it verified for at most a second (VERIFIED_FOR).
        while client.get("/api/v1/auth/session", headers=headers).status_code != 401:
            assert time.monotonic() - started < 1.5, "the revoked key still works"
            time.sleep(0.02)

    verified = run_cli("audit", "verify", data_dir=data_dir)
    assert verified.returncode == 0, verified.stderr + verified.stdout
    listed = [json.loads(line) for line in run_cli(
        "audit", "list", "--json", data_dir=data_dir).stdout.splitlines()]  # fmt: skip
    actions = {entry["action"] for entry in listed}
    assert {"user.created", "startup_link.used", "key.created", "key.revoked"} <= actions

    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE id = "
                     "(SELECT min(id) FROM audit_log)")  # fmt: skip
    tampered = run_cli("audit", "verify", data_dir=data_dir)
    assert tampered.returncode != 0
    assert "edited" in tampered.stdout + tampered.stderr
