"""Starting a real server as a user would: defaults, TLS off loopback, refusals (S1, S2,
S10, S15)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import FINGERPRINT, ServerProcess, free_port, run_cli

# Servers start as a user starts them: a new interpreter (tests/support/forkserver.py).
pytestmark = [pytest.mark.e2e, pytest.mark.exec_server]

Start = Callable[..., ServerProcess]
SECRET = "Sup3rS3cretT0kenValue"


def served_fingerprint(port: int) -> str:
    """The SHA-256 of the certificate the server presents, formatted as safeboard prints it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read the certificate, nothing is sent
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def test_default_start_is_plain_http_on_loopback(server_factory: Start) -> None:
    server = server_factory()
    assert server.banner[0].startswith("safeboard ")
    assert f"listening on http://127.0.0.1:{server.port}" in server.banner[0]
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((server.data_dir / "secrets.toml").stat().st_mode) == 0o600
    assert (server.data_dir / "safeboard.db").exists()
    with server.client() as client:
        response = client.get("/healthz")
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "disk": "ok",
        "artifact_disk": "ok",
    }
    # Loopback only: the kernel's table of listening sockets shows 127.0.0.1, nothing wider.
    assert listening_addresses(server.port) == {"127.0.0.1"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            if len(address) == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


def test_all_interfaces_turns_on_tls_and_prints_fingerprint(server_factory: Start) -> None:
    server = server_factory("--host", "0.0.0.0")
    assert server.tls
    assert listening_addresses(server.port) == {"0.0.0.0"}
    leaf = [line for line in server.banner if line.startswith("    fingerprint ")]
    printed = FINGERPRINT.search("\n".join(leaf))
    assert printed, server.banner
    assert printed.group(1) == served_fingerprint(server.port)
    # The CA comes first: its fingerprint is the one teammates compare when they log in.
    (first,) = [line for line in server.banner if FINGERPRINT.search(line)][:1]
    assert first.startswith("    CA SHA256:"), server.banner
    assert "`safeboard login URL` shows and pins it" in first
    with server.client() as client:  # verifies against the generated CA
        assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 200
    certs = (server.data_dir / "tls").iterdir()
    for path in certs:
        if path.suffix == ".key":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_restart_keeps_certificate_and_secrets(server_factory: Start) -> None:
    first = server_factory("--tls")
    fingerprint = served_fingerprint(first.port)
    secrets_before = (first.data_dir / "secrets.toml").read_text()
    first.stop()
    second = server_factory("--tls")
    assert second.data_dir == first.data_dir
    assert served_fingerprint(second.port) == fingerprint
    assert (second.data_dir / "secrets.toml").read_text() == secrets_before


def test_python_dash_m_works_and_version(tmp_path: Path) -> None:
    result = run_cli("--version", data_dir=tmp_path / "d")
    assert result.returncode == 0
    assert "safeboard" in result.stdout


def test_world_readable_secrets_stop_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    assert run_cli("config", "show", data_dir=data_dir).returncode == 0  # first start
    (data_dir / "secrets.toml").chmod(0o644)
    result = run_cli("server", "--port", str(free_port()), data_dir=data_dir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "secrets.toml" in lines[0]
    assert "chmod 600" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--host", "0.0.0.0", "--no-tls"], "--behind-proxy"),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-key"),
        (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "c.pem"),
        (["--database-url", "mysql://x@localhost/db"], "postgresql"),
        (["--port", "0x50"], "port"),
        (["--database-url", "sqlite:////nonexistent/dir/x.db"], "cannot use database"),
        (["--database-url", "postgresql+psycopg://sb:Pw0rdPw0rd@127.0.0.1:9/x"], "127.0.0.1:9"),
        (["--behind-proxy", "0.0.0.0/0", "--host", "0.0.0.0", "--no-tls"], "too broad"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_fix(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    result = run_cli("server", *args, data_dir=tmp_path / "d")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(needle in line for line in error_lines), result.stderr
    assert "Pw0rdPw0rd" not in result.stderr  # a password in the URL is never printed
    assert "internal error" not in result.stderr
    assert len(error_lines) <= 3, result.stderr  # click usage errors add a usage line


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("server", "--port", str(port), data_dir=tmp_path / "d")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr
    # A first start that fails leaves its lock file only (before: secrets.toml too).
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["server.lock"]


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    result = run_cli("config", "show", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    secrets = tomllib.loads((data_dir / "secrets.toml").read_text())["secure"]
    shown = tomllib.loads(result.stdout)
    assert shown["server"]["host"] == "127.0.0.1"
    assert shown["server"]["port"] == 8080
    for name, value in secrets.items():
        assert value not in result.stdout
        assert shown["secure"][name] == "**********"


def test_secrets_rotate_replaces_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    run_cli("config", "show", data_dir=data_dir)
    before = (data_dir / "secrets.toml").read_text()
    result = run_cli("secrets", "rotate", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    after = tomllib.loads((data_dir / "secrets.toml").read_text())["secure"]
    # The replaced task key is kept, so that tasks' stored secrets stay readable.
    old_task_key = tomllib.loads(before)["secure"]["task_secrets_key"]
    assert after.pop("task_secrets_previous_keys") == old_task_key
    for value in after.values():
        assert value not in before
        assert value not in result.stdout
    assert stat.S_IMODE((data_dir / "secrets.toml").stat().st_mode) == 0o600
    logged = run_cli("audit", "list", "--json", "--action", "secrets.rotated", data_dir=data_dir)
    assert '"secrets.rotated"' in logged.stdout, logged.stderr


def test_tls_show_describes_certificates(server_factory: Start) -> None:
    server = server_factory("--tls")
    result = run_cli("tls", "show", data_dir=server.data_dir)
    assert result.returncode == 0, result.stderr
    assert served_fingerprint(server.port) in result.stdout
    assert str(server.ca_path) in result.stdout


def test_server_log_holds_no_secrets(server_factory: Start) -> None:
    server = server_factory()
    with server.client() as client:
        client.get(f"/healthz?token={SECRET}")
        client.get(f"/nowhere?password={SECRET}&api_key={SECRET}")
        client.get("/healthz", headers={"Authorization": f"Bearer {SECRET}"})
        client.get("/healthz", headers={"Cookie": f"safeboard={SECRET}"})
        client.get(f"/x/sb_k1_{SECRET}")
    server.stop()
    log = server.log
    assert "/healthz?token=[REDACTED]" in log
    assert SECRET not in log
    secrets = tomllib.loads((server.data_dir / "secrets.toml").read_text())["secure"]
    assert not any(value in log for value in secrets.values())


def test_db_upgrade_command(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", data_dir=tmp_path / "d")
    assert result.returncode == 0, result.stderr
    assert "schema at" in result.stdout
    again = run_cli("db", "upgrade", data_dir=tmp_path / "d")
    assert "up to date" in again.stdout


def test_no_traceback_on_unreadable_data_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/safeboard-cannot-exist")
    else:
        target = tmp_path / "ro" / "d"
        (tmp_path / "ro").mkdir(mode=0o500)
    result = run_cli("config", "show", "--data-dir", str(target), data_dir=tmp_path / "x")
    assert result.returncode == 2
    assert "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_given_certificate_is_served(server_factory: Start, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")  # a test dependency, installed by scripts/test
    authority = trustme.CA()
    leaf = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), ca=ca)
    assert "(given" in "\n".join(server.banner)
    printed = FINGERPRINT.search("\n".join(server.banner))
    assert printed
    assert printed.group(1) == served_fingerprint(server.port)
    assert not (server.data_dir / "tls" / "ca.pem").exists()  # nothing generated


def test_given_mismatched_key_is_one_line(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    first, second = authority.issue_cert("localhost"), authority.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(first.cert_chain_pems[0].bytes())
    key.write_bytes(second.private_key_pem.bytes())
    key.chmod(0o600)
    result = run_cli(
        "server",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--port",
        str(free_port()),
        data_dir=tmp_path / "d",
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is not the key of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("file", "content", "needle"),
    [
        ("safeboard.toml", b"[server\nport=", "not valid UTF-8 TOML"),
        ("safeboard.toml", b"\xff\xfe", "not valid UTF-8 TOML"),
        ("safeboard.db", b"this is not a database" * 100, "cannot use database"),
    ],
)
def test_broken_files_in_data_dir_are_one_line(
    tmp_path: Path, file: str, content: bytes, needle: str
) -> None:
    data_dir = tmp_path / "d"
    assert run_cli("config", "show", data_dir=data_dir).returncode == 0
    (data_dir / file).write_bytes(content)
    result = run_cli("server", "--port", str(free_port()), data_dir=data_dir)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
