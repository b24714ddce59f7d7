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

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.support.busy_gate import BusyGate

pytestmark = pytest.mark.e2e

RETRY_AFTER = 2  # seconds the gate asks for
BUSY_SECONDS = 7.0  # how long the gate answers 503 to batches, from the first one
STEPS = 60  # the script logs 10 metrics at each step, one step every 0.1 s
KEYS = 10

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


class Busy:
    """Whether a POST is refused: those whose path ends with ``suffix`` ("/metrics": the
    batches, "": every POST), for BUSY_SECONDS from the first of them."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.until: float | None = None  # set by the first one
        self.lock = threading.Lock()

    def __call__(self, path: str) -> bool:
        if not path.endswith(self.suffix):
            return False
        with self.lock:
            now = time.monotonic()
            if self.until is None:
                self.until = now + BUSY_SECONDS
            return now < self.until


@pytest.fixture(params=["/metrics", ""], ids=["batches", "from-init"])
def gate(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[BusyGate, ServerProcess, str]]:
    """503s to metric batches, or to every POST from the run's creation at init() on."""
    server = start_server(tmp_path, "--tls", name="tls")
    gate = BusyGate(
        server.data_dir / "tls", server.client(), Busy(request.param), retry_after=RETRY_AFTER
    )
    try:
        yield gate, server, request.param
    finally:
        gate.close()
        server.stop()


def test_the_sdk_waits_what_a_busy_server_asks_says_it_once_and_loses_nothing(
    gate: tuple[BusyGate, ServerProcess, str], tmp_path: Path
) -> None:
    proxy, server, suffix = gate
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

    batches = [(at, status) for at, path, status in proxy.posts if path.endswith(suffix)]
    refused = [at for at, status in batches if status == 503]
    assert len(refused) >= 2, batches
    gaps = [b - a for a, b in pairwise(refused)]
    assert min(gaps) >= RETRY_AFTER * 0.95, gaps  # never sooner than asked
    assert len(refused) <= BUSY_SECONDS / RETRY_AFTER + 1, gaps
    # (from init(): the run's creation meets "no such project" first, then makes it)
    assert all(status < 500 for _, status in batches if status != 503), batches

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
