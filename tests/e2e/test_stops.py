"""Stops with someone waiting: a graceful stop of the server (SIGINT) while an idle agent's
lease long-poll is open ends within a second, with no traceback and no 5xx to the agent,
which goes on once the server is back; Ctrl-C on an idle ``safeboard agent run`` ends it
at once (a running task keeps its drain: test_agent_run.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safeboard.datadir import LOCAL_SOCKET
from tests.e2e.conftest import cli_env, run_cli, start_server
from tests.e2e.test_agent_run import (
    SETTINGS,
    Agent,
    agent_env,
    api,
    kill_agents,
    launch_agent,
    state_of,
    submit,
    task,
    wait_for,
)

pytestmark = pytest.mark.e2e

# The agent's own default long-poll (20 s) and the server's default poll interval: the
# wait a stop must cut short, as a user has it.
POLL = ("--poll", "20s", "--labels", "stops")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    kill_agents(agents)


def _signal_and_time(process: subprocess.Popen[Any], signum: int) -> float:
    """Send ``signum``; the seconds until the process exited."""
    begun = time.monotonic()
    process.send_signal(signum)
    process.wait(timeout=30)
    return time.monotonic() - begun


def test_a_stop_ends_an_idle_agent_s_long_poll_at_once(
    tmp_path: Path, started: list[Agent]
) -> None:
    server = start_server(tmp_path, name="stopping")
    try:
        with api(server) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        agent = launch_agent(tmp_path, server, "idle", POLL, agent_env(tmp_path), started)
        time.sleep(1.5)  # its lease request is waiting on the server
        took = _signal_and_time(server.process, signal.SIGINT)
        assert took < 2.0, f"the stop took {took:.2f} s:\n{server.log}"
        # Ctrl-C's status, after the server's own cleanup (its local socket taken away).
        assert server.process.returncode == 130, server.log
        assert not (server.data_dir / LOCAL_SOCKET).exists()
        assert "Traceback" not in server.log, server.log
        assert "ERROR" not in server.log, server.log

        again = start_server(tmp_path, name="stopping", port=server.port)
        server = again
        task_id = submit(again, "stops", sys.executable, "-c", "print('after the restart')")
        assert state_of(again, task_id, "succeeded", "failed", timeout=60)["state"] == "succeeded"
        assert agent.process.poll() is None, agent.err
        assert " 500 " not in agent.out + agent.err, agent.out + agent.err
        assert "Traceback" not in agent.err, agent.err
    finally:
        server.stop()


def test_ctrl_c_ends_an_idle_agent_at_once(tmp_path: Path, started: list[Agent]) -> None:
    server = start_server(tmp_path, name="idle")
    try:
        agent = launch_agent(tmp_path, server, "idle", POLL, agent_env(tmp_path), started)
        time.sleep(1.5)  # its lease request is waiting on the server
        took = _signal_and_time(agent.process, signal.SIGINT)
        assert took < 2.0, f"the agent took {took:.2f} s to stop:\n{agent.out}{agent.err}"
        assert agent.process.returncode == 0, agent.err
        assert "agent stopped" in agent.out, agent.out
        assert "draining" not in agent.out, agent.out  # nothing ran: nothing to drain
        assert "Traceback" not in agent.err, agent.err
        # Its long-poll, left behind, takes no task for it: the task waits for an agent.
        with api(server) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        task_id = submit(server, "stops", sys.executable, "-c", "pass")
        time.sleep(2)
        assert task(server, task_id)["state"] == "queued"
        assert task(server, task_id)["attempts"] == []
    finally:
        server.stop()


def test_a_draining_agent_starts_no_task_its_poll_wins(
    tmp_path: Path, started: list[Agent]
) -> None:
    """Ctrl-C with a task running: the agent drains, and its lease long-poll, still open
    (up to --poll), may be answered with a new task; that task is not started ("no new
    tasks"), only said, and is queued again when its lease lapses."""
    server = start_server(tmp_path, name="draining")
    try:
        with api(server) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        agent = launch_agent(tmp_path, server, "busy", (*POLL, "--max-tasks", "2"),
                             agent_env(tmp_path), started)  # fmt: skip
        first = submit(server, "stops", sys.executable, "-c", "import time; time.sleep(8)")
        state_of(server, first, "running", timeout=30)
        time.sleep(1.0)  # its next lease request is waiting on the server
        agent.process.send_signal(signal.SIGINT)
        wait_for(lambda: "draining" in agent.out, 10, "the agent's drain")
        late = submit(server, "stops", sys.executable, "-c", "print('started late')")
        wait_for(lambda: f"task {late} was leased as the agent stopped" in agent.out, 15,
                 "the late lease said")  # fmt: skip
        agent.process.wait(timeout=30)
        assert "started late" not in agent.out, agent.out
        assert state_of(server, first, "succeeded", "failed")["state"] == "succeeded"
        attempts = task(server, late)["attempts"]
        assert [a["state"] for a in attempts if a["state"] in ("running", "succeeded")] == []
    finally:
        server.stop()


COUNTER = (
    "import sys, time\n"
    "for i in range(1, int(sys.argv[1]) + 1):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.25)\n"
)


@pytest.mark.parametrize("revoke", [False, True], ids=["same-key", "key-revoked"])
def test_task_logs_follow_rides_through_a_server_restart(
    tmp_path: Path, started: list[Agent], revoke: bool
) -> None:
    """``task logs -f`` across a graceful stop and a start on the same data directory and
    port: it says once that the server is away, then prints on, every line once; a read
    without -f meanwhile fails at once with the usual message. ``key-revoked``: the
    discovery key it follows with is revoked while the server is down, so the start
    writes a new one, which the follow reads from the discovery file and goes on with."""
    settings = {**SETTINGS, "SAFEBOARD__JOBS__LEASE_SECONDS": "60"}  # outlives the restart
    server = start_server(tmp_path, name="restarting", settings=settings)
    follower: subprocess.Popen[str] | None = None
    try:
        with api(server) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        launch_agent(tmp_path, server, "follow", ("--labels", "stops"), agent_env(tmp_path),
                     started)  # fmt: skip
        task_id = submit(server, "stops", sys.executable, "-c", COUNTER, "60")
        out, err = tmp_path / "logs-f.out", tmp_path / "logs-f.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            follower = subprocess.Popen(
                [sys.executable, "-m", "safeboard", "task", "logs", str(task_id), "-f"],
                env=cli_env(server.data_dir), stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        wait_for(lambda: "line 5" in out.read_text(), 30, "the first lines followed")
        server.stop()
        time.sleep(1)
        once = run_cli("task", "logs", str(task_id), data_dir=server.data_dir, timeout=10)
        assert once.returncode == 2, once.stderr
        assert "no safeboard server answers" in once.stderr, once.stderr
        key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
        if revoke:
            key_id = key.removeprefix("sb_").split("_")[0]
            revoked = run_cli("key", "revoke", key_id, data_dir=server.data_dir)
            assert revoked.returncode == 0, revoked.stderr
        server = start_server(tmp_path, name="restarting", port=server.port, settings=settings)
        fresh = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
        assert (fresh != key) is revoke
        assert follower.wait(timeout=90) == 0, err.read_text()
        assert out.read_text().splitlines() == [f"line {i}" for i in range(1, 61)]
        said = err.read_text()
        assert said.count("the server is away") == 1, said
        assert said.count("the server answers again") == 1, said
        assert "Traceback" not in said, said
        assert "error:" not in said, said
    finally:
        server.stop()
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()
