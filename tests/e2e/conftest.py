"""A real ``safeboard server`` process, started the way a user starts it."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import forkserver
from tests.support.hashing import FAST_ARGON2_ENV

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 60
_PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(data_dir: Path) -> dict[str, str]:
    """The environment of a CLI or server process on the machine of ``data_dir``: none of
    the caller's SAFEBOARD variables, and the cheaper password hashing of the test tiers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env.update(FAST_ARGON2_ENV)
    env["SAFEBOARD_DATA_DIR"] = str(data_dir)
    # Training scripts count their metrics exactly; system metrics (on by default) are
    # tested on their own (test_system_metrics.py), which turns them back on.
    env["SAFEBOARD_SYSTEM_METRICS"] = "0"
    return env


def run_cli(
    *args: str,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess: as root on the machine of ``data_dir``, or with ``env``;
    ``input``: what it reads on stdin (an answer to a confirmation). Forked from the
    worker's fork server (tests/support/forkserver.py: about 1 CPU s less for a local
    command), or with ``fresh`` a new interpreter, as a user runs it."""
    if env is None:
        assert data_dir is not None, "run_cli needs data_dir or env"
        env = cli_env(data_dir)
    if not fresh and forkserver.available():
        return forkserver.run(list(args), env, input=input, timeout=timeout)
    return subprocess.run(
        [sys.executable, "-m", "safeboard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes] | forkserver.ForkedProcess
    data_dir: Path
    port: int
    log_path: Path
    banner: list[str] = field(default_factory=list)
    given_ca: Path | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def tls(self) -> bool:
        return "https://" in self.banner[0]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.given_ca or self.data_dir / "tls" / "ca.pem"

    def client(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = False
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.ca_path))
        return httpx.Client(base_url=self.url, verify=verify, timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path: Path,
    *args: str,
    name: str = "srv",
    ca: Path | None = None,
    port: int | None = None,
    settings: dict[str, str] | None = None,
    forked: bool = True,
) -> ServerProcess:
    """Start ``python -m safeboard server`` and wait until it answers /healthz.

    ``settings``: environment variables of the server (``SAFEBOARD__JOBS__...``).
    ``forked``: forked from an interpreter that has imported the server already
    (tests/support/forkserver.py, about 3 CPU s less per start); False for a new
    interpreter, as a user starts it (the ``exec_server`` marker of a test module).
    Without a given ``port`` it takes a free one; should another process (another xdist
    worker, an outgoing connection) take that port before the server binds it, the start
    is tried again on another port.
    """
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        server = _launch(
            tmp_path, args, name, ca, port or free_port(), settings or {}, forked=forked
        )
        try:
            _wait_healthy(server)
        except BaseException as failed:
            server.stop()
            retry = isinstance(failed, AssertionError) and port is None
            if retry and attempt < _PORT_ATTEMPTS and _port_taken(server):
                continue
            raise
        return server
    raise AssertionError("unreachable")


def _launch(
    tmp_path: Path,
    args: tuple[str, ...],
    name: str,
    ca: Path | None,
    port: int,
    settings: dict[str, str],
    *,
    forked: bool,
) -> ServerProcess:
    data_dir = tmp_path / name
    log_path = tmp_path / f"{name}.log"
    env = {**cli_env(data_dir), **settings}
    if forked and forkserver.available():
        process = forkserver.spawn(["server", "--port", str(port), *args], env, log_path)
        return ServerProcess(process, data_dir, port, log_path, given_ca=ca)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "server", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return ServerProcess(process, data_dir, port, log_path, given_ca=ca)


def _port_taken(server: ServerProcess) -> bool:
    """Whether the server stopped because its port was in use (src/safeboard/server/run.py)."""
    log = server.log
    return (
        server.process.returncode == 2 and "cannot listen on " in log and f":{server.port}:" in log
    )


def _wait_healthy(server: ServerProcess) -> None:
    process = server.process
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log}")
        lines = server.log.splitlines()
        banner = [i for i, line in enumerate(lines) if "listening on" in line]
        if banner:
            server.banner = lines[banner[0] :]
            try:
                with server.client() as client:
                    if client.get("/healthz").status_code == 200:
                        return
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"server did not become healthy:\n{server.log}")


@pytest.fixture
def server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []
    forked = request.node.get_closest_marker("exec_server") is None

    def start(
        *args: str, name: str = "srv", ca: Path | None = None, port: int | None = None
    ) -> ServerProcess:
        server = start_server(tmp_path, *args, name=name, ca=ca, port=port, forked=forked)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


FINGERPRINT = re.compile(r"SHA256:((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
