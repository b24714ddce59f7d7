"""The CLI refuses to send a credential over plain HTTP off loopback (S13), wherever the
address comes from: ``SAFEBOARD_URL``, ``--url``, or a key stored for an ``http://`` server.
One line on stderr naming the fix, exit 2, no traceback, and no connection made: a listener on
this machine's own non-loopback address (when it has one) sees nobody knock."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeboard.client import CredentialStore
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.e2e

KEY = "sb_abc123_" + "k" * 43


def _own_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """``(url, knocks)``: a TCP listener off loopback that records each connection."""
    address = _own_address()
    if address is None:
        yield "http://board.invalid:8080", []
        return
    knocks: list[str] = []
    server = socket.socket()
    server.bind((address, 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            knocks.append(str(peer))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.getsockname()[1]}", knocks
    finally:
        done.set()
        thread.join(5)
        server.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env |= {"SAFEBOARD_CONFIG_DIR": str(tmp_path / "config"),
            "SAFEBOARD_DATA_DIR": str(tmp_path / "no-server"), **extra}  # fmt: skip
    return env


def _refused(result: object, url: str) -> None:
    assert getattr(result, "returncode", None) == 2
    stderr = str(getattr(result, "stderr", ""))
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("safeboard: error: ")
    assert "https://" in lines[0]
    assert "nothing was sent" in lines[0]
    assert "Traceback" not in stderr
    assert KEY not in stderr


def test_cli_refuses_plain_http_off_loopback(
    listener: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, knocks = listener
    from_env = _env(tmp_path, SAFEBOARD_URL=url, SAFEBOARD_API_KEY=KEY)
    for args in (("artifacts", "list", "0" * 32), ("runs", "list", "--project", "p"),
                 ("artifacts", "download", "0" * 32, "-o", str(tmp_path / "out"))):  # fmt: skip
        _refused(run_cli(*args, env=from_env), url)
    _refused(run_cli("projects", "list", "--url", url, env=_env(tmp_path)), url)

    # A key stored for an http:// server (by an older version, or by hand).
    credentials = tmp_path / "config" / "credentials"
    credentials.mkdir(parents=True, mode=0o700)
    (tmp_path / "config").chmod(0o700)
    stored = CredentialStore(credentials).path_for(url)
    record = {"url": url, "username": "u", "key_id": "k", "key_name": "n", "api_key": KEY,
              "saved_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    stored.write_text(json.dumps(record))
    stored.chmod(0o600)
    _refused(run_cli("projects", "list", env=_env(tmp_path)), url)
    # logout deletes such a key here without sending it anywhere.
    logout = run_cli("logout", url, env=_env(tmp_path))
    assert logout.returncode == 0, logout.stderr
    assert "without sending it" in logout.stdout
    assert not stored.exists()
    assert knocks == []
