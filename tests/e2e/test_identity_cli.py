"""Accounts, API keys and the audit log through the real CLI, against a running server
(S4, S8, S9, S16): what an operator does on the server's machine takes effect on the
server at once."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli
from tests.support.sessions import BINDING_HEADER, session_cookie_name

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
KEY = re.compile(r"^sb_([0-9a-f]+)_[A-Za-z0-9_-]{43,}$")
SIGN_IN_LINE = re.compile(r"^  sign in as (\S+): \S+/login#token=(\S+)$")
INVITE_LINK = re.compile(r"(https?://\S+)/invite#token=(\S+)")
SESSION = "/api/v1/auth/session"
PASSWORD = "velvet-Lantern-orbit-83-gravel"
REVOCATION_SECONDS = 1.0


def banner_login(server: ServerProcess) -> tuple[str, str]:
    """The admin's name and the startup token printed in the banner."""
    found = [m for m in map(SIGN_IN_LINE.match, server.banner) if m]
    assert len(found) == 1, server.banner
    user, token = found[0].groups()
    return user, token


def cli_ok(server: ServerProcess, *args: str) -> str:
    result = run_cli(*args, data_dir=server.data_dir)
    assert result.returncode == 0, f"safeboard {' '.join(args)}: {result.stderr}"
    return result.stdout


def create_key(server: ServerProcess, *args: str) -> tuple[str, str]:
    """``safeboard key create ...``: the key (alone on stdout) and its id."""
    token = cli_ok(server, "key", "create", *args).strip()
    match = KEY.match(token)
    assert match, "key create must print exactly the key on stdout"
    return token, match.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def until_refused(check: Callable[[], int], limit: float) -> float:
    """Call ``check`` until it answers 401; return how long that took after the call."""
    start = time.monotonic()
    while True:
        status = check()
        elapsed = time.monotonic() - start
        if status == 401 or elapsed > limit:
            assert status == 401, f"still {status} after {elapsed:.2f} s"
            return elapsed
        time.sleep(0.02)


def log_lines(server: ServerProcess, needle: str, timeout: float = 5) -> list[str]:
    """Lines of the server log holding ``needle``, waiting briefly for the access log."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.log.splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_cli_key_works_until_revoked_and_never_from_a_query_string(server_factory: Start) -> None:
    server = server_factory()
    admin, _ = banner_login(server)
    token, key_id = create_key(server, "--name", "ci", "--scope", "read")
    secret = token.split("_", 2)[2]

    with server.client() as client:
        who = client.get(SESSION, headers=bearer(token))
        assert who.status_code == 200, who.text
        assert who.json()["user"]["username"] == admin
        assert who.json()["credential"] == "api_key"
        assert who.json()["csrf_token"] is None
        # A read key cannot write, whatever its owner may do (S8: no more than its scope).
        assert (
            client.post("/api/v1/keys", headers=bearer(token), json={"name": "more"}).status_code
            == 403
        )

        # A credential in the query string is refused, and the server never logs it.
        for query in (f"api_key={token}", f"q={token}"):
            refused = client.get(f"{SESSION}?{query}")
            assert refused.status_code == 400, (query, refused.text)
        also_header = client.get(f"{SESSION}?api_key={token}", headers=bearer(token))
        assert also_header.status_code == 400

        revoked = cli_ok(server, "key", "revoke", key_id)
        assert key_id in revoked
        took = until_refused(
            lambda: client.get(SESSION, headers=bearer(token)).status_code, REVOCATION_SECONDS
        )
        assert took < REVOCATION_SECONDS

    logged = log_lines(server, f"{SESSION}?")
    assert len(logged) == 3, "the refused requests belong in the access log, redacted"
    assert all('=[REDACTED]" 400 ' in line for line in logged), logged
    assert secret not in server.log
    assert key_id not in "\n".join(logged)


def test_local_commands_start_without_the_server_app(server_factory: Start) -> None:
    """``safeboard key`` and ``safeboard user`` build the users and keys alone
    (account_services): a new interpreter imports neither the web framework nor numpy,
    httpx, the other domains or (on SQLite) psycopg, and the key it makes works on the
    running server."""
    server = server_factory()
    env = {**cli_env(server.data_dir), "PYTHONPROFILEIMPORTTIME": "1"}  # each import, stderr
    made = run_cli("key", "create", "--name", "lean", env=env, fresh=True)
    assert made.returncode == 0, made.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in made.stderr.splitlines()}
    assert {"safeboard.account_services", "sqlalchemy"} <= imported  # the timing is on
    app = {"fastapi", "starlette", "numpy", "httpx", "safeboard.services", "safeboard.runs"}
    heavy = app | {"psycopg"}  # a server on SQLite: no PostgreSQL driver either
    assert heavy.isdisjoint(imported), heavy & imported
    listed = run_cli("user", "list", "--json", env=env, fresh=True)
    assert listed.returncode == 0, listed.stderr
    assert heavy.isdisjoint(line.rsplit("|", 1)[-1].strip() for line in listed.stderr.splitlines())
    with server.client() as client:
        assert client.get(SESSION, headers=bearer(made.stdout.strip())).status_code == 200


def test_cli_key_works_with_curl_until_revoked(server_factory: Start) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: the httpx test above covers the same key flow")
    server = server_factory()
    admin, _ = banner_login(server)
    token, key_id = create_key(server, "--name", "curl", "--scope", "read")

    def curl_status() -> tuple[int, str]:
        done = subprocess.run(
            [
                curl,
                "--silent",
                "--show-error",
                "--max-time",
                "5",
                "--write-out",
                "\n%{http_code}",
                "--header",
                f"Authorization: Bearer {token}",
                f"{server.url}{SESSION}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        body, _, code = done.stdout.rpartition("\n")
        return int(code), body

    status, body = curl_status()
    assert status == 200, body
    assert json.loads(body)["user"]["username"] == admin

    cli_ok(server, "key", "revoke", key_id)
    took = until_refused(lambda: curl_status()[0], REVOCATION_SECONDS)
    assert took < REVOCATION_SECONDS


def test_audit_verify_passes_then_names_a_row_edited_by_hand(server_factory: Start) -> None:
    server = server_factory()
    admin, startup_token = banner_login(server)
    with server.client() as client:
        signed_in = client.post("/api/v1/auth/startup", json={"token": startup_token})
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["user"]["username"] == admin

    actions = [
        json.loads(line)["action"]
        for line in cli_ok(server, "audit", "list", "--json").splitlines()
    ]
    assert "startup_link.used" in actions, actions
    intact = run_cli("audit", "verify", data_dir=server.data_dir)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("audit log intact:")

    with sqlite3.connect(server.data_dir / "safeboard.db") as db:
        (first,) = db.execute("SELECT min(id) FROM audit_log").fetchone()
        db.execute(
            "UPDATE audit_log SET actor = 'user:mallory' WHERE id = (SELECT min(id) FROM audit_log)"
        )
    db.close()

    tampered = run_cli("audit", "verify", data_dir=server.data_dir)
    assert tampered.returncode != 0
    assert tampered.stdout.startswith("audit log TAMPERED:")
    assert f"#{first}: edited" in tampered.stdout, tampered.stdout


def test_users_invites_and_disabling_through_the_cli(server_factory: Start) -> None:
    server = server_factory()
    admin, _ = banner_login(server)

    users = [json.loads(line) for line in cli_ok(server, "user", "list", "--json").splitlines()]
    assert [(u["username"], u["role"], u["is_active"]) for u in users] == [(admin, "admin", True)]

    assert "added bob (member)" in cli_ok(server, "user", "add", "bob")
    invited = INVITE_LINK.search(cli_ok(server, "user", "invite", "bob"))
    assert invited, "user invite must print a link with /invite#token="
    assert invited.group(1) == server.url
    accept = {"token": invited.group(2), "password": PASSWORD}

    with server.client() as client:
        first = client.post("/api/v1/auth/invite", json=accept)
        assert first.status_code == 200, first.text
        assert first.json()["user"] == first.json()["user"] | {"username": "bob", "role": "member"}
        cookie = session_cookie_name(server.url)
        bob_session = {
            "Cookie": f"{cookie}={first.cookies[cookie]}",
            BINDING_HEADER: first.json()["binding"],
        }
        client.cookies.clear()
        second = client.post("/api/v1/auth/invite", json=accept)
        assert second.status_code == 401, second.text
        assert "set-cookie" not in second.headers

        bob_key, _ = create_key(server, "--user", "bob", "--name", "bobs", "--scope", "read")
        assert client.get(SESSION, headers=bearer(bob_key)).json()["user"]["username"] == "bob"
        assert client.get(SESSION, headers=bob_session).status_code == 200

        assert "bob disabled" in cli_ok(server, "user", "disable", "bob")
        # Another process disabled him: his key, verified just now, stops within the
        # server's second of trust (a new interpreter's CLI took longer than that).
        until_refused(
            lambda: client.get(SESSION, headers=bearer(bob_key)).status_code, REVOCATION_SECONDS
        )
        assert client.get(SESSION, headers=bob_session).status_code == 401
        login = client.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
        assert login.status_code == 401

    for args in (("user", "disable", admin), ("user", "set-role", admin, "member")):
        refused = run_cli(*args, data_dir=server.data_dir)
        assert refused.returncode != 0, refused.stdout
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "last active admin" in refused.stderr
        assert "Traceback" not in refused.stderr
    users = [json.loads(line) for line in cli_ok(server, "user", "list", "--json").splitlines()]
    assert {u["username"]: (u["role"], u["is_active"]) for u in users} == {
        admin: ("admin", True),
        "bob": ("member", False),
    }


def test_startup_link_is_single_use_and_a_restart_voids_an_unused_one(
    server_factory: Start,
) -> None:
    first = server_factory(name="restarted")
    admin, unused = banner_login(first)
    old_local_key = json.loads((first.data_dir / "discovery.json").read_text())["api_key"]
    first.stop()

    second = server_factory(name="restarted")
    assert second.data_dir == first.data_dir
    assert banner_login(second)[0] == admin
    _, fresh = banner_login(second)
    assert fresh != unused
    new_local_key = json.loads((second.data_dir / "discovery.json").read_text())["api_key"]

    with second.client() as client:
        void = client.post("/api/v1/auth/startup", json={"token": unused})
        assert void.status_code == 401, void.text
        assert "set-cookie" not in void.headers
        ok = client.post("/api/v1/auth/startup", json={"token": fresh})
        assert ok.status_code == 200, ok.text
        assert ok.json()["user"]["username"] == admin
        client.cookies.clear()
        used = client.post("/api/v1/auth/startup", json={"token": fresh})
        assert used.status_code == 401, used.text

        # The local API key survives a restart (issue 11): scripts running across it go on.
        assert new_local_key == old_local_key
        assert client.get(SESSION, headers=bearer(new_local_key)).status_code == 200


def test_startup_route_needs_json_from_our_own_origin(server_factory: Start) -> None:
    """Login CSRF: a cross-site form cannot spend the startup token for someone else."""
    server = server_factory()
    _, token = banner_login(server)
    with server.client() as client:
        form = client.post("/api/v1/auth/startup", data={"token": token})
        assert form.status_code == 403
        foreign = client.post(
            "/api/v1/auth/startup",
            json={"token": token},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        # Neither spent it.
        assert client.post("/api/v1/auth/startup", json={"token": token}).status_code == 200
