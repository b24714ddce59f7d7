"""``run.log()`` never stalls the training loop while the server is away (issue 13): a
script logs 300,000 points of 10 metrics, its server killed (SIGKILL) just after init()
and started again once the loop is done; the worst call stays under a generous bound (the
1 ms figure is bench/log_stall.py's, on a quiet machine), and every point is stored once
when the server is back. Marked ``alone``: scripts/test runs it after the parallel suite,
by itself (beside three other workers on two cores the kernel once held the script for
117 ms, a figure of the machine's)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import cli_env, run_cli, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.alone]

CALLS = 300_000
KEYS = 10
WORST_MS = 50.0  # the previous SDK: 80-300 ms (full garbage collections over waiting points)

SCRIPT = textwrap.dedent(
    f"""
    import json, sys, time
    from array import array
    import safeboard
    run = safeboard.init(project="stalls", name="away")
    print(run.id, flush=True)
    sys.stdin.readline()  # the server is killed meanwhile
    keys = [f"m{{k}}" for k in range({KEYS})]
    took = array("q", bytes(8 * {CALLS}))
    clock, log = time.perf_counter_ns, run.log
    for i in range({CALLS}):
        data = {{k: i + 0.5 for k in keys}}
        started = clock()
        log(data, step=i)
        took[i] = clock() - started
    print(json.dumps({{"worst_ms": max(took) / 1e6, "over_1ms": sum(t > 1e6 for t in took)}}),
          flush=True)
    sys.stdin.readline()  # the server is back
    run.finish(timeout=120)
    print("finished", flush=True)
    """
)


def test_log_never_stalls_while_the_server_is_away_and_nothing_is_lost(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--tls", name="tls")
    made = run_cli("key", "create", "--name", "w", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    env = cli_env(tmp_path / "nowhere")
    env.update(
        SAFEBOARD_URL=server.url, SAFEBOARD_API_KEY=key, SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"), SAFEBOARD_CONFIG_DIR=str(tmp_path / "cfg"),
        SAFEBOARD_QUIET="1",
    )  # fmt: skip
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert script.stdout is not None
        assert script.stdin is not None
        run_id = script.stdout.readline().strip()
        server.process.kill()
        server.process.wait()
        script.stdin.write("go\n")
        script.stdin.flush()
        figures = json.loads(script.stdout.readline())
        server = start_server(tmp_path, "--tls", name="tls", port=server.port)
        script.stdin.write("go\n")
        script.stdin.flush()
        out, err = script.communicate(timeout=300)
        assert script.returncode == 0, err
        assert "finished" in out, err
        with server.client() as client:
            client.headers["Authorization"] = f"Bearer {key}"
            run = client.get(f"/api/v1/runs/{run_id}").json()
            points = client.get(f"/api/v1/runs/{run_id}/points?metric=m7").json()
    finally:
        if script.poll() is None:
            script.kill()
        server.stop()
    assert figures["worst_ms"] < WORST_MS, figures
    assert {m["key"]: m["count"] for m in run["metrics"]} == {f"m{k}": CALLS for k in range(KEYS)}
    assert points["steps"] == list(range(CALLS))  # each once, in order
    assert run["status"] == "finished"
