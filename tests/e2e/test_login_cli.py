"""``safeboard login`` against a real TLS server (S13, issue 4 "Done when"): with a fresh
config directory the certificate is pinned on the fingerprint the person names; a wrong
fingerprint, an unconfirmed certificate and, after the server's certificate is replaced, the
pinned one all refuse before a single credential is sent."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest

from safeboard.client import (
    ApiClient,
    CertificateChanged,
    CredentialStore,
    TrustStore,
    resolve_server,
)
from tests.e2e import conftest as e2e_conftest
from tests.e2e.conftest import FINGERPRINT, ServerProcess, cli_env, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
PASSWORD = "quartz-Meadow-ember-61-lantern"
SIGN_IN = "POST /api/v1/auth/login"
# Works before and after login/logout are registered in safeboard.cli.
CLI = (
    "import sys; from safeboard.cli import cli; "
    "from safeboard.cli.login_cmd import login, logout; "
    "cli.add_command(login); cli.add_command(logout); "
    "from safeboard.cli import main; main(sys.argv[1:])"
)


def safeboard(
    *args: str, config: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess with its own config directory and no local server to find."""
    env = cli_env(config.parent / "no-local-server")
    env["SAFEBOARD_CONFIG_DIR"] = str(config)
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def login(
    server: ServerProcess, config: Path, *args: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    return safeboard(
        "login", server.url, "--username", "alice", "--password-stdin", *args,
        config=config, stdin=f"{password}\n",
    )  # fmt: skip


def add_alice(server: ServerProcess) -> None:
    assert run_cli("user", "add", "alice", data_dir=server.data_dir).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "safeboard", "user", "set-password", "--password-stdin", "alice"],
        env=cli_env(server.data_dir),
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def served_fingerprint(server: ServerProcess) -> str:
    """The fingerprint login shows and pins: the generated CA's (issue 11)."""
    ca_lines = [line for line in server.banner if line.startswith("    CA SHA256:")]
    found = FINGERPRINT.search("\n".join(ca_lines))
    assert found, server.banner
    return found.group(0)


def settled_log(server: ServerProcess) -> str:
    """The server log once every earlier request is in it: a marker request comes last."""
    before = server.log.count('"GET /healthz"')
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
    deadline = time.monotonic() + 5
    while server.log.count('"GET /healthz"') <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.log


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A refusal: non-zero exit, one line on stderr naming ``needles``, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_login_pins_the_certificate_and_refuses_a_replaced_one(
    server_factory: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory("--tls", name="pinned")
    add_alice(server)
    config = tmp_path / "config"
    old = served_fingerprint(server)
    wrong = "SHA256:" + ":".join(["5A"] * 32)

    # Not trusted by the system, no terminal to ask, no --fingerprint: refused, shown.
    unconfirmed = login(server, config)
    refused(unconfirmed, old, "--fingerprint")
    assert old in unconfirmed.stdout
    assert "127.0.0.1" in unconfirmed.stdout
    # A fingerprint that is not the server's: refused, naming both.
    refused(login(server, config, "--fingerprint", wrong), old, wrong, "nothing was sent")
    assert SIGN_IN not in settled_log(server)
    assert not (config / "credentials").exists()
    assert not (config / "trust").exists()

    # The right fingerprint: pinned, signed in, a key minted for this device and stored.
    first = login(server, config, "--fingerprint", old.removeprefix("SHA256:").lower())
    assert first.returncode == 0, first.stderr
    assert f"pinned {old}" in first.stdout
    pins = list((config / "trust").iterdir())
    keys = list((config / "credentials").iterdir())
    assert len(pins) == len(keys) == 1
    assert {mode(config), mode(pins[0].parent), mode(keys[0].parent)} == {0o700}
    assert mode(pins[0]) == mode(keys[0]) == 0o600
    assert json.loads(pins[0].read_text())["fingerprint"] == old
    stored = json.loads(keys[0].read_text())
    assert stored["username"] == "alice"
    token = stored["api_key"]
    assert token.startswith("sb_")
    for secret in (token, PASSWORD):
        assert secret not in first.stdout + first.stderr
    with server.client() as client:
        who = client.get("/api/v1/auth/session", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 200, who.text
        assert who.json()["user"]["username"] == "alice"

    # The SDK's way in: the same stores, the pinned certificate as the only anchor.
    trust, store = TrustStore(config / "trust"), CredentialStore(config / "credentials")
    access = resolve_server(environ={}, store=store, trust=trust, data_dir=tmp_path / "none")
    assert (access.url, access.source) == (server.url, "login")
    assert token not in repr(access)
    with access.client() as api:
        assert api.get("/api/v1/auth/session").json()["user"]["username"] == "alice"
    assert settled_log(server).count(SIGN_IN) == 1

    # The server gets a new CA and a new certificate, on the same address.
    server.stop()
    for name in ("server.pem", "server.key", "ca.pem", "ca.key"):
        (server.data_dir / "tls" / name).unlink()
    port = server.port
    monkeypatch.setattr(e2e_conftest, "free_port", lambda: port)
    server = server_factory("--tls", name="pinned")
    assert server.port == port
    new = served_fingerprint(server)
    assert new != old

    changed = login(server, config)
    line = refused(changed, old, new, f"--fingerprint {new}", "nothing was sent")
    assert "changed" in line
    assert PASSWORD not in changed.stdout + changed.stderr
    with pytest.raises(CertificateChanged) as caught, access.client() as api:
        api.get("/api/v1/auth/session")
    assert (caught.value.expected, caught.value.presented) == (old, new)
    with (
        pytest.raises(CertificateChanged),
        ApiClient(server.url, token, verify=access.verify) as api,
    ):
        api.post("/api/v1/keys", json={"name": "x"})
    after_change = settled_log(server)
    assert "/api/v1/" not in after_change, "no request may reach the server after the change"
    assert token.split("_", 2)[2] not in after_change

    # Trusting the new certificate, as the refusal says: the key is still valid, so it is
    # kept and no password is asked (issue 11).
    again = login(server, config, "--fingerprint", new)
    assert again.returncode == 0, again.stderr
    assert f"pinned {new}" in again.stdout
    assert f"replaces {old}" in again.stdout
    assert "is still valid: kept it, no password needed" in again.stdout
    new_token = json.loads(keys[0].read_text())["api_key"]
    assert new_token == token
    with server.client() as client:
        ok = client.get("/api/v1/auth/session", headers={"Authorization": f"Bearer {new_token}"})
        assert ok.status_code == 200

    # Logout revokes the key (a key may not manage keys: the password signs that in).
    out = safeboard("logout", server.url, "--password-stdin", config=config, stdin=PASSWORD)
    assert out.returncode == 0, out.stderr
    assert "revoked this device's API key" in out.stdout
    assert not keys[0].exists()
    assert pins[0].exists()
    with server.client() as client:
        ended = client.get("/api/v1/auth/session", headers={"Authorization": f"Bearer {new_token}"})
        assert ended.status_code == 401


def test_interactive_login_asks_before_trusting(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    add_alice(server)
    fingerprint = served_fingerprint(server)
    env = {**cli_env(tmp_path / "no-local-server"), "SAFEBOARD_CONFIG_DIR": str(tmp_path / "c")}

    def spawn() -> Any:
        args = ["-c", CLI, "login", server.url, "--username", "alice"]
        return pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=30)

    declined = spawn()
    declined.expect_exact(fingerprint)
    declined.expect_exact("Trust this certificate? [y/N]")
    declined.sendline("")
    declined.expect(pexpect.EOF)
    declined.close()
    assert declined.exitstatus != 0
    assert "nothing was sent" in (declined.before or "")
    assert SIGN_IN not in settled_log(server)

    accepted = spawn()
    accepted.expect_exact("Trust this certificate? [y/N]")
    accepted.sendline("y")
    accepted.expect_exact("password:")
    accepted.sendline(PASSWORD)
    accepted.expect_exact(f"signed in to {server.url} as alice")
    accepted.expect(pexpect.EOF)
    accepted.close()
    assert accepted.exitstatus == 0
    assert PASSWORD not in (accepted.before or "")
    assert TrustStore(tmp_path / "c" / "trust").get(server.url) is not None
    assert list((tmp_path / "c" / "credentials").iterdir())


def test_login_with_the_servers_ca_needs_no_pin(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    add_alice(server)
    config = tmp_path / "config"
    result = login(server, config, "--ca-cert", str(server.ca_path))
    assert result.returncode == 0, result.stderr
    assert not (config / "trust").exists()
    access = resolve_server(
        server.url,
        ca_cert=server.ca_path,
        environ={},
        store=CredentialStore(config / "credentials"),
        trust=TrustStore(config / "trust"),
    )
    with access.client() as api:
        assert api.get("/api/v1/auth/session").json()["user"]["username"] == "alice"


def test_a_project_owner_gets_an_admin_key_with_login_scope_and_grants_remotely(
    server_factory: Start, tmp_path: Path
) -> None:
    """The refusal tells a teammate how to get the key it needs on their own machine
    (`safeboard login URL --scope admin`), and that command does it (issue 11)."""
    server = server_factory()  # plain HTTP on loopback: the login needs no certificate
    add_alice(server)
    assert run_cli("user", "add", "bob", data_dir=server.data_dir).returncode == 0
    config = tmp_path / "config"
    assert login(server, config).returncode == 0
    stored = next((config / "credentials").iterdir())
    write_key = json.loads(stored.read_text())["api_key"]
    with server.client() as client:
        made = client.post(
            "/api/v1/projects",
            json={"name": "vision"},
            headers={"Authorization": f"Bearer {write_key}"},
        )
        assert made.status_code == 201, made.text
    refused_grant = safeboard("grant", "vision", "bob", config=config)
    assert refused_grant.returncode != 0
    assert "safeboard login URL --scope admin` on your machine" in refused_grant.stderr

    admin = login(server, config, "--scope", "admin")
    assert admin.returncode == 0, admin.stderr
    assert "scope admin" in admin.stdout
    assert "revoked the previous key of this device" in admin.stdout
    granted = safeboard("grant", "vision", "bob", config=config)
    assert granted.returncode == 0, granted.stderr
    with server.client() as client:
        old = client.get("/api/v1/auth/session", headers={"Authorization": f"Bearer {write_key}"})
        assert old.status_code == 401
