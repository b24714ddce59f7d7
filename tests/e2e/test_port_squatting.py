"""A process that takes the server's port while it is down receives nothing (issue 10,
item 10): local clients reach the server that wrote the discovery file through its Unix
socket in the 0700 data directory, never through whoever holds the TCP port."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conftest import cli_env, free_port, run_cli
from tests.e2e.test_sdk import Start, check_run, discovery_key, sdk_env, train


@contextmanager
def squatter(port: int) -> Iterator[list[str]]:
    """An HTTP server on 127.0.0.1:``port`` that records every request it receives."""
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}\n{self.headers}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = do_PATCH = _any  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_squatter_on_the_port_gets_neither_key_nor_data(
    server_factory: Start, tmp_path: Path
) -> None:
    port = free_port()
    first = server_factory(name="srv", port=port)
    key = discovery_key(first)
    first.process.kill()  # a crash: the socket file stays behind, nobody listens on it
    first.process.wait()
    env = sdk_env(first, tmp_path)
    with squatter(port) as seen:
        result = train(tmp_path, env, "50")
        listed = run_cli("runs", "list", "--project", "mnist", env=env)
    assert seen == [], f"the squatter received {len(seen)} request(s):\n{seen[0]}"
    assert result.returncode == 0, result.stderr  # training went on and spooled (R2)
    assert listed.returncode != 0
    assert "Traceback" not in listed.stderr
    assert key not in result.stderr + listed.stderr
    # The real server comes back on its port (replacing the stale socket) and gets it all.
    second = server_factory(name="srv", port=port)
    synced = run_cli("sync", env=sdk_env(second, tmp_path), timeout=120)
    assert synced.returncode == 0, synced.stderr
    check_run(second, result.stdout.strip(), 50)
    assert through_socket(second.log)  # sync went through the socket too


def test_second_server_on_one_data_directory_is_refused(
    server_factory: Start, tmp_path: Path
) -> None:
    first = server_factory(name="srv")
    other = subprocess.run(
        [sys.executable, "-m", "safeboard", "server", "--port", str(free_port())],
        env=cli_env(first.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert other.returncode != 0
    assert "another safeboard server is running" in other.stderr + other.stdout
    with first.client() as client:  # the first one still serves
        assert client.get("/healthz").status_code == 200
    sock = first.data_dir / "server.sock"
    assert sock.is_socket()
    assert sock.stat().st_mode & 0o077 == 0


def test_long_data_directory_path(server_factory: Start, tmp_path: Path) -> None:
    """Longer than a Unix socket's 108-byte path: reached through the directory's fd."""
    name = "d" * (120 - len(str(tmp_path)))
    server = server_factory(name=name)
    assert len(str(server.data_dir / "server.sock")) > 108
    env = sdk_env(server, tmp_path)
    result = train(tmp_path, env, "20")
    assert result.returncode == 0, result.stderr
    check_run(server, result.stdout.strip(), 20)
    assert through_socket(server.log), server.log


def through_socket(log: str) -> list[str]:
    """Access-log lines of requests that came through the Unix socket (no client address)."""
    return [line for line in log.splitlines() if 'safeboard.access: - "' in line]
