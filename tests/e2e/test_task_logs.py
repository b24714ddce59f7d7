"""Task logs end to end: a real TLS server, ``safeboard agent run`` and the CLI as real
processes. A task's stdout and stderr reach ``safeboard task logs`` every line once, in
order; ``task logs -f`` started before the task runs prints them live and ends with the
task; the server killed (-9) while the task prints and started again on the same data
directory and port: every line arrives, once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import Agent, agents, api, state_of, submit, wait_for

pytestmark = pytest.mark.e2e
__all__ = ["agents"]  # the fixture, shared with test_agent_run

# A lease long enough to outlive a server restart on a loaded machine.
SETTINGS = {
    "SAFEBOARD__JOBS__LEASE_SECONDS": "60",
    "SAFEBOARD__JOBS__REAPER_SECONDS": "0.5",
    "SAFEBOARD__JOBS__POLL_SECONDS": "1",
}
# Numbered lines to stdout and stderr, a pause in the middle ("half"), a line too long.
PRINTER = (
    "import sys, time\n"
    "n = int(sys.argv[1])\n"
    "for i in range(1, n + 1):\n"
    "    print(f'out {i}', flush=True)\n"
    "    if i % 3 == 0:\n"
    "        print(f'err {i}', file=sys.stderr, flush=True)\n"
    "    if i == n // 2:\n"
    "        print('half', flush=True)\n"
    "        time.sleep(float(sys.argv[2]))\n"
    "print('x' * 20000, flush=True)\n"
    "sys.exit(int(sys.argv[3]))\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-logs"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


def logged(server: ServerProcess, task_id: int) -> list[dict[str, object]]:
    shown = run_cli("task", "logs", str(task_id), "--json", data_dir=server.data_dir)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def expected(n: int) -> list[tuple[str, str]]:
    lines = []
    for i in range(1, n + 1):
        lines.append(("stdout", f"out {i}"))
        if i % 3 == 0:
            lines.append(("stderr", f"err {i}"))
        if i == n // 2:
            lines.append(("stdout", "half"))
    return lines


def in_order(found: list[dict[str, object]], lines: list[tuple[str, str]]) -> bool:
    """Each stream's lines in order (between stdout and stderr, two pipes promise none),
    then the long line, cut."""
    got = [(x["stream"], x["text"]) for x in found]
    long = [t for s, t in got if s == "stdout"][-1]
    assert isinstance(long, str)
    assert long == "x" * 16384 + " [safeboard agent: line cut at 16384 bytes]"
    got.remove(("stdout", long))
    return all(
        [t for s, t in got if s == stream] == [t for s, t in lines if s == stream]
        for stream in ("stdout", "stderr")
    ) and len(got) == len(lines)


def follower(
    server: ServerProcess, task_id: int, tmp_path: Path
) -> tuple[subprocess.Popen[str], Path, Path]:
    out, err = tmp_path / f"follow-{task_id}.out", tmp_path / f"follow-{task_id}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "task", "logs", "-f", str(task_id)],
            env=cli_env(server.data_dir), stdout=stdout, stderr=stderr, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return process, out, err


def test_lines_shipped_in_order_and_followed_live(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    n = 300
    task_id = submit(server, "printer", sys.executable, "-c", PRINTER, str(n), "3", "0")
    follow, out, err = follower(server, task_id, tmp_path)  # before any agent runs it
    time.sleep(1.0)
    assert follow.poll() is None
    agent = agents("a", "--labels", "printer")
    # Live: the first half is printed while the task still sleeps in the middle.
    wait_for(lambda: "half" in out.read_text(), 30, "the first half, followed")
    assert state_of(server, task_id, "running", "succeeded")["state"] == "running"
    assert follow.wait(timeout=60) == 0, err.read_text()
    printed = out.read_text().splitlines()
    lines = expected(n)
    assert printed[:-1] == [text for stream, text in lines if stream == "stdout"]
    assert printed[-1].startswith("x" * 16000)
    assert printed[-1].endswith("[safeboard agent: line cut at 16384 bytes]")
    assert err.read_text().splitlines() == [t for s, t in lines if s == "stderr"]

    found = logged(server, task_id)
    assert [x["n"] for x in found] == list(range(1, len(lines) + 2))  # every line, once
    assert in_order(found, lines)
    assert {x["attempt"] for x in found} == {1}

    # A failing task: -f prints its lines and ends with its state, exit 1.
    failing = submit(server, "printer", sys.executable, "-c", PRINTER, "4", "0", "3")
    follow, out, err = follower(server, failing, tmp_path)
    assert follow.wait(timeout=60) == 1
    assert "out 4" in out.read_text()
    assert f"task {failing}: failed (exit code 3)" in err.read_text()
    assert agent.stop() == 0, agent.err
    assert "Traceback" not in agent.err


def test_every_line_once_across_a_server_killed_and_restarted(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    first = start_server(tmp_path, "--tls", name="srv", settings=SETTINGS)
    try:
        with api(first) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        agent = agents("k", "--labels", "kill", on=first)
        n = 600
        slow = PRINTER.replace(
            "flush=True)\n    if i % 3", "flush=True); time.sleep(0.01)\n    if i % 3"
        )
        task_id = submit(first, "kill", sys.executable, "-c", slow, str(n), "0", "0")
        state_of(first, task_id, "running")
        time.sleep(1.5)  # lines are flowing
        first.process.kill()
        first.process.wait(timeout=30)
        time.sleep(2.0)  # the task prints on; the agent keeps its lines in the spool
        second = start_server(tmp_path, "--tls", name="srv", port=first.port, settings=SETTINGS)
        try:
            done = state_of(second, task_id, "succeeded", "failed", timeout=120)
            assert done["state"] == "succeeded", done
            found = logged(second, task_id)
            lines = expected(n)
            assert [x["n"] for x in found] == list(range(1, len(lines) + 2))
            assert in_order(found, lines)
            assert "cannot ship its output" in agent.out, agent.out
            assert agent.stop() == 0, agent.err
        finally:
            second.stop()
    finally:
        first.stop()
