"""The SDK backs off when the server answers 503 with Retry-After (issue 13): a training
script keeps logging, its sender waits at least what the server asks (and longer while it
lasts), says so once, and every point is stored once when the server takes data again.

The 503s come from a gate in front of a real TLS server: it terminates TLS with the
server's own certificate (the SDK's real client path, CA verification on), answers
``database_busy`` + ``Retry-After`` to metric batches (or to every POST, from the run's
creation at init() on) during a window, and passes everything else through. A real server
cannot yet be made to answer that code on demand (a locked SQLite writer answers after its
busy wait, and the code is the server's to set).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server

pytestmark = pytest.mark.e2e

RETRY_AFTER = 2  # seconds the gate asks for
BUSY_SECONDS = 7.0  # how long the gate answers 503 to batches, from the first one
STEPS = 60  # the script logs 10 metrics at each step, one step every 0.1 s
KEYS = 10
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}

SCRIPT = textwrap.dedent(
    f"""
    import sys, time
    import safeboard
    run = safeboard.init(project="backoff", name="busy", flush_interval=0.2)
    for step in range({STEPS}):
        run.log({{f"m{{k}}": step + k / 10 for k in range({KEYS})}}, step=step)
        time.sleep(0.1)
    run.finish(timeout=60)
    print(run.id)
    """
)


class Gate(ThreadingHTTPServer):
    """HTTPS in front of ``upstream``; 503s to metric batches while ``busy_until``."""

    daemon_threads = True

    def __init__(self, upstream: ServerProcess, gated: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        tls = upstream.data_dir / "tls"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "server.pem", tls / "server.key")
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.upstream = upstream.client()
        self.gated_suffix = gated  # the POSTs answered 503: "/metrics", or "" (all of them)
        self.busy_until: float | None = None  # set by the first batch
        self.batches: list[tuple[float, int]] = []  # (when, status answered)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def gated(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if self.busy_until is None:
                self.busy_until = now + BUSY_SECONDS
            return now < self.busy_until


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Gate

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(size) if size else b""
        batch = self.command == "POST" and self.path.endswith(self.server.gated_suffix)
        if batch and self.server.gated():
            self.server.batches.append((time.monotonic(), 503))
            error = {"code": "database_busy", "message": "the database is busy", "request_id": "-"}
            headers = {"Content-Type": "application/json", "Retry-After": str(RETRY_AFTER)}
            self._answer(503, json.dumps({"error": error}).encode(), headers)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
        answer = self.server.upstream.request(
            self.command, self.path, content=body, headers=headers
        )
        if batch:
            self.server.batches.append((time.monotonic(), answer.status_code))
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        self._answer(answer.status_code, answer.content, kept)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay  # noqa: N815  (stdlib's names)


@pytest.fixture(params=["/metrics", ""], ids=["batches", "from-init"])
def gate(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Gate, ServerProcess]]:
    """503s to metric batches, or to every POST from the run's creation at init() on."""
    server = start_server(tmp_path, "--tls", name="tls")
    gate = Gate(server, request.param)
    thread = threading.Thread(target=gate.serve_forever, daemon=True)
    thread.start()
    try:
        yield gate, server
    finally:
        gate.shutdown()
        gate.server_close()
        gate.upstream.close()
        server.stop()


def test_the_sdk_waits_what_a_busy_server_asks_says_it_once_and_loses_nothing(
    gate: tuple[Gate, ServerProcess], tmp_path: Path
) -> None:
    proxy, server = gate
    made = run_cli("key", "create", "--name", "w", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    env = cli_env(tmp_path / "nowhere")
    env.update(
        SAFEBOARD_URL=proxy.url, SAFEBOARD_API_KEY=made.stdout.strip(),
        SAFEBOARD_CA_CERT=str(server.ca_path), SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "config"), SAFEBOARD_QUIET="1",
    )  # fmt: skip
    script = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    run_id = script.stdout.strip().splitlines()[-1]

    refused = [at for at, status in proxy.batches if status == 503]
    assert len(refused) >= 2, proxy.batches
    gaps = [b - a for a, b in pairwise(refused)]
    assert min(gaps) >= RETRY_AFTER * 0.95, gaps  # never sooner than asked
    assert len(refused) <= BUSY_SECONDS / RETRY_AFTER + 1, gaps
    # (from init(): the run's creation meets "no such project" first, then makes it)
    assert all(status < 500 for _, status in proxy.batches if status != 503), proxy.batches

    said = [line for line in script.stderr.splitlines() if "cannot take data now" in line]
    assert len(said) == 1, script.stderr
    assert "database_busy" in said[0]
    assert "Traceback" not in script.stderr

    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {made.stdout.strip()}"
        run = client.get(f"/api/v1/runs/{run_id}").json()
        counts = {m["key"]: m["count"] for m in run["metrics"]}
        assert counts == {f"m{k}": STEPS for k in range(KEYS)}
        points = client.get(f"/api/v1/runs/{run_id}/points?metric=m3").json()
    assert points["steps"] == list(range(STEPS))  # each once, none missing
    assert run["status"] == "finished"
    assert not (tmp_path / "spool" / run_id).exists()  # all delivered, nothing left behind
