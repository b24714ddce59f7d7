"""Teammates stay connected (issue 11, TLS): ``safeboard login`` pins the CA of a generated
certificate, so a renewed leaf (new names, or near expiry) goes unnoticed; a replaced CA stops
every client before a credential is sent; re-trusting it keeps a still-valid key without a
password; pins of the leaf stored by earlier versions move to the CA that issued them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from safeboard.client import (
    CertificateChanged,
    CredentialStore,
    ServerAccess,
    TrustStore,
    fetch_chain,
    resolve_server,
)
from tests.e2e.conftest import ServerProcess, cli_env, run_cli
from tests.e2e.test_login_cli import (
    CLI,
    PASSWORD,
    SIGN_IN,
    Start,
    add_alice,
    login,
    refused,
    settled_log,
)

pytestmark = pytest.mark.e2e

CA_LINE = re.compile(r"^    CA (SHA256:[0-9A-F:]{95}) \((.*)\)$")
KEPT = "is still valid: kept it, no password needed"


def banner_ca(server: ServerProcess) -> tuple[str, str]:
    """The CA fingerprint the start banner prints, and what it says about it."""
    found = [m for m in map(CA_LINE.match, server.banner) if m]
    assert len(found) == 1, server.banner
    return found[0].group(1), found[0].group(2)


def banner_leaf(server: ServerProcess) -> str:
    lines = [line for line in server.banner if line.startswith("    fingerprint ")]
    assert len(lines) == 1, server.banner
    return lines[0].split()[-1]


def sdk(config: Path, tmp_path: Path) -> ServerAccess:
    store, trust = CredentialStore(config / "credentials"), TrustStore(config / "trust")
    return resolve_server(environ={}, store=store, trust=trust, data_dir=tmp_path / "none")


def whoami(access: ServerAccess) -> str:
    with access.client() as api:
        return str(api.get("/api/v1/auth/session").json()["user"]["username"])


def test_a_pinned_ca_outlives_renewals_and_stops_a_new_ca(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls", name="team")
    add_alice(server)
    config = tmp_path / "config"
    ca, said = banner_ca(server)
    assert said.startswith("new: first start")
    assert "issued at this start (there was none)" in "\n".join(server.banner)

    # The handshake presents leaf + CA; login shows and pins the CA.
    chain = fetch_chain(server.url)
    assert [c.fingerprint for c in chain] == [banner_leaf(server), ca]
    first = login(server, config, "--fingerprint", ca)
    assert first.returncode == 0, first.stderr
    assert f"pinned {ca} (CA)" in first.stdout
    assert "safeboard local CA" in first.stdout  # the subject a person compares
    pin = json.loads(next((config / "trust").iterdir()).read_text())
    assert (pin["kind"], pin["fingerprint"]) == ("ca", ca)
    token = json.loads(next((config / "credentials").iterdir()).read_text())["api_key"]

    # `safeboard tls show` describes what the running server serves (started with --tls,
    # which the settings file does not say).
    shown = run_cli("tls", "show", data_dir=server.data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "TLS is off" not in shown.stdout
    assert f"The running server on https://127.0.0.1:{server.port} serves HTTPS" in shown.stdout
    assert ca in shown.stdout
    assert banner_leaf(server) in shown.stdout

    access = sdk(config, tmp_path)  # a long-lived SDK client: its context is made once
    assert whoami(access) == "alice"

    # A restart with another --tls-san: a new leaf under the same CA, unnoticed by clients.
    server.stop()
    renewed = server_factory("--tls", "--tls-san", "board.example", name="team", port=server.port)
    assert banner_ca(renewed) == (ca, "unchanged: clients that pinned it notice no renewal")
    assert "issued at this start (the names changed)" in "\n".join(renewed.banner)
    assert banner_leaf(renewed) != banner_leaf(server)
    assert whoami(access) == "alice"
    assert whoami(sdk(config, tmp_path)) == "alice"
    again = login(renewed, config)
    assert again.returncode == 0, again.stderr
    assert KEPT in again.stdout
    assert "pinned" not in again.stdout
    assert settled_log(renewed).count(SIGN_IN) == 0

    # The CA is replaced: every client stops before sending its key.
    renewed.stop()
    for name in ("ca.pem", "ca.key"):
        (renewed.data_dir / "tls" / name).unlink()
    replaced = server_factory("--tls", name="team", port=server.port)
    new_ca, said = banner_ca(replaced)
    assert new_ca != ca
    assert said.startswith("new: the previous CA's files were missing")
    with pytest.raises(CertificateChanged) as caught:
        whoami(access)
    assert (caught.value.expected, caught.value.presented) == (ca, new_ca)
    with pytest.raises(CertificateChanged):
        whoami(sdk(config, tmp_path))
    changed = login(replaced, config)
    refused(changed, ca, new_ca, f"--fingerprint {new_ca}", "nothing was sent")
    log = settled_log(replaced)
    assert "/api/v1/" not in log, "no request may reach the server after the change"
    assert token.split("_", 2)[2] not in log

    # Re-trusting the new CA: the stored key is still valid, so no password is asked.
    retrust = login(replaced, config, "--fingerprint", new_ca, password="")
    assert retrust.returncode == 0, retrust.stderr
    assert f"pinned {new_ca} (CA)" in retrust.stdout
    assert f"replaces {ca}" in retrust.stdout
    assert KEPT in retrust.stdout
    assert settled_log(replaced).count(SIGN_IN) == 0
    assert json.loads(next((config / "credentials").iterdir()).read_text())["api_key"] == token
    assert whoami(sdk(config, tmp_path)) == "alice"

    # A key the server refuses: then, and only then, the password.
    path = next((config / "credentials").iterdir())
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "api_key": token[:-4] + "AAAA"}))
    signed = login(replaced, config)
    assert signed.returncode == 0, signed.stderr
    assert KEPT not in signed.stdout
    assert "signed in to" in signed.stdout
    assert settled_log(replaced).count(SIGN_IN) == 1
    assert PASSWORD not in signed.stdout + signed.stderr


def test_a_leaf_pin_of_an_earlier_version_moves_to_its_ca(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls", name="old")
    add_alice(server)
    config = tmp_path / "config"
    ca, _ = banner_ca(server)
    leaf = banner_leaf(server)
    # What earlier versions stored: the leaf, pinned by its own fingerprint.
    first = login(server, config, "--fingerprint", ca)
    assert first.returncode == 0, first.stderr
    trust = TrustStore(config / "trust")
    old_leaf = fetch_chain(server.url)[0]

    def store_a_leaf_pin() -> Path:
        path = trust.pin(server.url, old_leaf)
        record = json.loads(path.read_text())
        del record["kind"]
        path.write_text(json.dumps({**record, "version": 1}))
        return path

    # The SDK moves the pin to the CA that signed the pinned leaf by itself (issue 11
    # review: only `login` did, so teammates broke at the next renewal).
    path = store_a_leaf_pin()
    assert whoami(sdk(config, tmp_path)) == "alice"
    assert json.loads(path.read_text())["kind"] == "ca"

    # The leaf is renewed while an old leaf pin is stored: login follows the CA that issued
    # the pinned leaf, without a prompt or a password.
    store_a_leaf_pin()
    server.stop()
    renewed = server_factory("--tls", "--tls-san", "b.example", name="old", port=server.port)
    assert banner_leaf(renewed) != leaf
    moved = login(renewed, config)
    assert moved.returncode == 0, moved.stderr
    assert f"pinned {ca} (CA)" in moved.stdout
    assert f"replaces {leaf}" in moved.stdout
    assert KEPT in moved.stdout
    assert json.loads(path.read_text())["kind"] == "ca"
    assert whoami(sdk(config, tmp_path)) == "alice"
    assert settled_log(renewed).count(SIGN_IN) == 0
    # And so does the SDK after a renewal, no login needed.
    store_a_leaf_pin()
    assert whoami(sdk(config, tmp_path)) == "alice"
    assert json.loads(path.read_text())["kind"] == "ca"


def test_on_a_terminal_a_new_ca_is_confirmed_and_the_key_kept(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls", name="tty")
    add_alice(server)
    config = tmp_path / "config"
    ca, _ = banner_ca(server)
    assert login(server, config, "--fingerprint", ca).returncode == 0
    server.stop()
    for name in ("ca.pem", "ca.key"):
        (server.data_dir / "tls" / name).unlink()
    replaced = server_factory("--tls", name="tty", port=server.port)
    new_ca, _ = banner_ca(replaced)
    env = {**cli_env(tmp_path / "no-local-server"), "SAFEBOARD_CONFIG_DIR": str(config)}

    def spawn() -> Any:
        args = ["-c", CLI, "login", replaced.url, "--username", "alice"]
        return pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=30)

    declined = spawn()
    declined.expect_exact(f"has changed (trusted: {ca})")
    declined.expect_exact(new_ca)
    declined.expect_exact("Trust the new certificate? [y/N]")
    declined.sendline("")
    declined.expect(pexpect.EOF)
    declined.close()
    assert declined.exitstatus != 0
    assert "nothing was sent" in (declined.before or "")
    assert json.loads(next((config / "trust").iterdir()).read_text())["fingerprint"] == ca

    accepted = spawn()
    accepted.expect_exact("Trust the new certificate? [y/N]")
    accepted.sendline("y")
    index = accepted.expect_exact([KEPT, "password:"])
    assert index == 0, "a valid key needs no password"
    accepted.expect(pexpect.EOF)
    accepted.close()
    assert accepted.exitstatus == 0
    assert json.loads(next((config / "trust").iterdir()).read_text())["fingerprint"] == new_ca
    assert settled_log(replaced).count(SIGN_IN) == 0
