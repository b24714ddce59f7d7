"""Failures through real processes (issue 14): a TLS ``safeboard server``, ``safeboard
agent run`` processes, tasks as their children. An agent killed with -9 mid-task, the
server restarted mid-task (the task's SDK spools its metrics through it), an agent
revoked while its task runs, a server whose CA changed, two agents racing for the same
tasks (SQLite and PostgreSQL), and GPU matching with fake inventories."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import safeboard
from safeboard.agent.isolation import AS_ROOT_WARNING
from tests.e2e.conftest import ServerProcess, run_cli, start_server
from tests.e2e.test_agent_run import (
    FAKE_GPUS,
    LEASE,
    SETTINGS,
    TRAP_TERM,
    Agent,
    agent_env,
    api,
    kill_agents,
    launch_agent,
    state_of,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

Start = Callable[..., Agent]
HERE = str(Path(safeboard.__file__).resolve().parents[1])  # the safeboard under test


def with_database(tmp_path: Path, name: str, url: str | None) -> None:
    """The server ``name`` under ``tmp_path`` uses the database ``url`` (None: SQLite)."""
    if url is not None:
        data_dir = tmp_path / name
        data_dir.mkdir(mode=0o700, exist_ok=True)
        (data_dir / "safeboard.toml").write_text(f'[database]\nurl = "{url}"\n')


def new_server(
    tmp_path: Path, name: str = "srv", url: str | None = None, **settings: str
) -> ServerProcess:
    with_database(tmp_path, name, url)
    server = start_server(tmp_path, "--tls", name=name, settings={**SETTINGS, **settings})
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    return server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test starts (appended), stopped at its end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Start]:
    """``start(server, name, *args, gpus=FAKE_GPUS)``: join ``server``, then ``agent run``."""
    started: list[Agent] = []

    def start(
        server: ServerProcess, name: str, *args: str, gpus: list[dict[str, Any]] | None = None
    ) -> Agent:
        env = agent_env(tmp_path)
        env["SAFEBOARD_AGENT_FAKE_GPUS"] = json.dumps(FAKE_GPUS if gpus is None else gpus)
        return launch_agent(tmp_path, server, name, args, env, started)

    yield start
    kill_agents(started)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str | None:
    """The database of the test's server: None (SQLite) or a fresh PostgreSQL's URL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def post_points(client: httpx.Client, run_id: str, step: int) -> httpx.Response:
    columns = {"steps": [step], "times": [time.time()], "values": [1.0]}
    batch = {"batch_id": f"late-write-{step}", "metrics": {"late": columns}}
    return client.post(f"/api/v1/runs/{run_id}/metrics", json=batch)


HOLD_TOKEN = (
    "import os, sys, time\n"
    "if os.environ['SAFEBOARD_ATTEMPT'] == '1':\n"
    "    open(sys.argv[1] + '.tmp', 'w').write(\n"
    "        f\"{os.getpid()} {os.environ['SAFEBOARD_TASK_TOKEN']}\")\n"
    "    os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "    time.sleep(120)\n"
)


def test_an_agent_killed_mid_task_its_attempt_and_token_end(
    agents: Start, servers: list[ServerProcess], tmp_path: Path, database: str | None
) -> None:
    """kill -9 of the agent: the attempt is lost within the lease, the task requeued as
    attempt 2 and run by a second agent to success; attempt 1's late writes are refused:
    its task's token (metrics) and its agent's credential (heartbeat, report)."""
    server = new_server(tmp_path, url=database)
    servers.append(server)
    first = agents(server, "k1", "--labels", "kill")
    held = tmp_path / "held"
    task_id = submit(server, "kill", sys.executable, "-c", HOLD_TOKEN, str(held))
    pid, token = wait_for(lambda: held.exists() and held.read_text().split(), 20, "attempt 1")
    try:
        running = state_of(server, task_id, "running")
        with api(server, token) as task_client:  # the task's token works while it runs
            assert post_points(task_client, running["run_id"], 0).status_code == 200
        killed = time.monotonic()
        first.process.kill()
        first.process.wait()
        requeued = state_of(server, task_id, "queued", timeout=LEASE + 10)
        lost_after = time.monotonic() - killed
        assert requeued["attempts"][0]["state"] == "lost"
        assert lost_after < LEASE + 0.5 + 5  # the lease, a reaper pass, a busy machine
        second = agents(server, "k2", "--labels", "kill")
        done = state_of(server, task_id, "succeeded", "failed")
        assert done["state"] == "succeeded", done
        assert [(a["attempt"], a["state"]) for a in done["attempts"]] == [
            (1, "lost"), (2, "succeeded")
        ]  # fmt: skip
        assert done["attempts"][1]["agent_id"] == second.saved["agent_id"]
        # Attempt 1's process still runs (its own session): its writes are refused.
        assert Path(f"/proc/{pid}").exists()
        with api(server, token) as task_client:
            late = post_points(task_client, done["run_id"], 1)
            assert late.status_code == 401, late.text
        with api(server, first.saved["credential"]) as late_agent:
            beat = late_agent.post(f"/api/v1/agent/tasks/{task_id}/1/heartbeat")
            assert beat.status_code == 409, beat.text
            report = late_agent.post(f"/api/v1/agent/tasks/{task_id}/1/events",
                                     json={"kind": "exited", "exit_code": 0})  # fmt: skip
            assert report.status_code == 409, report.text
        with api(server) as client:
            points = client.get(f"/api/v1/runs/{done['run_id']}/points", params={"metric": "late"})
        assert points.json()["steps"] == [0]  # the write of attempt 1 while it was live
        assert second.stop() == 0, second.err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)


TRAIN_THROUGH_RESTART = (
    "import pathlib, sys, time\n"
    "import safeboard\n"
    "run = safeboard.init()\n"
    "for step in range(60):\n"
    "    run.log({'loss': 1.0 / (step + 1)}, step=step)\n"
    "    if step == 10:\n"
    "        pathlib.Path(sys.argv[1]).write_text('x')\n"
    "    time.sleep(0.1)\n"
    "run.finish(timeout=60)\n"
    "print('finished', flush=True)\n"
)


def test_a_server_restart_mid_task_keeps_every_metric_once(agents: Start, tmp_path: Path) -> None:
    """The server stops while the task logs (its SDK spools what it cannot send) and
    starts again on the same data directory and port: the task succeeds and its run holds
    each of its 60 points exactly once."""
    settings = {"SAFEBOARD__JOBS__LEASE_SECONDS": "30"}  # outlives the restart
    server = new_server(tmp_path, "restarting", **settings)
    try:
        agent = agents(server, "s", "--labels", "restart")
        mark = tmp_path / "mark"
        task_id = submit(server, "restart", sys.executable, "-c", TRAIN_THROUGH_RESTART,
                         str(mark), env={"PYTHONPATH": HERE})  # fmt: skip
        wait_for(mark.exists, 30, "the task logging")
        server.stop()
        time.sleep(2)  # the task logs on meanwhile, into its spool
        server = start_server(tmp_path, "--tls", name="restarting", port=server.port,
                              settings={**SETTINGS, **settings})  # fmt: skip
        done = state_of(server, task_id, "succeeded", "failed", timeout=90)
        log = (agent.state_dir / "logs" / f"task-{task_id}.1.log").read_text()
        assert done["state"] == "succeeded", log[-3000:]
        assert [a["state"] for a in done["attempts"]] == ["succeeded"]
        with api(server) as client:
            run = client.get(f"/api/v1/runs/{done['run_id']}").json()
            points = client.get(f"/api/v1/runs/{done['run_id']}/points",
                                params={"metric": "loss"}).json()  # fmt: skip
        assert points["steps"] == list(range(60)), points["steps"]  # each once, in order
        assert run["status"] == "finished", run
        assert "finished" in log
        assert agent.stop() == 0, agent.err
        assert "Traceback" not in agent.err
    finally:
        server.stop()


def test_a_revoked_agent_is_refused_and_its_task_goes_to_another(
    agents: Start, servers: list[ServerProcess], tmp_path: Path
) -> None:
    """Revoking an agent while its task runs: its calls are refused from the revocation
    on (measured: under 1 s), the server records the attempt lost and requeues the task
    at once (not when the lease lapses), the agent stops the task's process group and
    exits 2 with one line, and another agent runs the task."""
    server = new_server(tmp_path, "revoking", SAFEBOARD__JOBS__LEASE_SECONDS="30")
    servers.append(server)
    agent = agents(server, "r", "--labels", "revoke")
    mark = tmp_path / "mark"
    script = ("import os, sys\n"
              "if os.environ['SAFEBOARD_ATTEMPT'] == '1':\n"
              f"    exec({TRAP_TERM!r})\n")  # fmt: skip
    task_id = submit(server, "revoke", sys.executable, "-c", script, str(mark))
    wait_for(lambda: mark.exists() and state_of(server, task_id, "running"), 20, "running")
    credential, agent_id = agent.saved["credential"], agent.saved["agent_id"]
    beat = f"/api/v1/agent/tasks/{task_id}/1/heartbeat"  # the agent's own next call
    with api(server) as admin, api(server, credential) as own:
        assert own.post(beat).status_code == 200
        asked = time.monotonic()
        assert admin.post(f"/api/v1/agents/{agent_id}/revoke").status_code == 200
        refused = own.post(beat)
        refused_after = time.monotonic() - asked
        requeued = admin.get(f"/api/v1/tasks/{task_id}").json()
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "agent_revoked"
    assert refused_after < 1.0, refused_after  # S9: a revocation holds at once
    # The server gave the attempt up in the revocation itself (a 30 s lease).
    assert requeued["state"] == "queued", requeued
    assert [(a["state"], a["reason"]) for a in requeued["attempts"]] == [
        ("lost", "its agent was revoked by an admin")
    ]  # fmt: skip
    # The agent hears it at its next heartbeat (a third of the lease), stops the task.
    assert agent.process.wait(timeout=30 / 3 + 15) == 2
    assert mark.read_text() == "SIGTERM"
    lines = [line for line in agent.err.splitlines()
             if line.strip() and not line.startswith(AS_ROOT_WARNING)]  # fmt: skip
    assert len(lines) == 1, agent.err
    assert "revoked" in lines[0]
    other = agents(server, "r2", "--labels", "revoke")
    done = state_of(server, task_id, "succeeded", "failed")
    assert [(a["attempt"], a["state"]) for a in done["attempts"]] == [
        (1, "lost"), (2, "succeeded")
    ]  # fmt: skip
    assert done["attempts"][1]["agent_id"] == other.saved["agent_id"]
    assert other.stop() == 0


def test_a_changed_server_ca_stops_the_agent_before_its_credential_is_sent(
    agents: Start, tmp_path: Path
) -> None:
    """The server comes back on the same port with another CA (a new data directory's
    tls/): ``agent status`` and ``agent run`` stop at the handshake with one line, and
    the new server never sees an agent request (its access log)."""
    first = new_server(tmp_path, "first")
    agent = agents(first, "ca", "--labels", "ca")
    assert agent.stop() == 0
    first.stop()
    other = start_server(tmp_path, "--tls", name="other", port=first.port)
    try:
        assert (other.data_dir / "tls" / "ca.pem").read_bytes() != first.ca_path.read_bytes()
        env = agent_env(tmp_path)
        state = ["--state-dir", str(agent.state_dir)]
        status = run_cli("agent", "status", *state, env=env)
        ran = run_cli("agent", "run", *state, "--poll", "1s", env=env, timeout=60)
        for refused in (status, ran):
            assert refused.returncode == 2, (refused.stdout, refused.stderr)
            lines = [line for line in refused.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, refused.stderr
            assert "has changed; nothing was sent" in lines[0], lines[0]
            assert "enroll again with a new join string" in lines[0], lines[0]
            assert "Traceback" not in refused.stderr
        time.sleep(0.5)  # the access log is written as each request ends
        log = other.log
        assert '"GET /healthz' in log  # the access log is on: requests do show up
        assert "/api/v1/agent" not in log, log
        assert agent.saved["credential"] not in log
    finally:
        other.stop()


RACE_TASKS = 300  # the test's share: bench/agents.py races 1,000 through 4 agents


def test_two_agents_race_and_each_task_runs_once(
    agents: Start, servers: list[ServerProcess], tmp_path: Path, database: str | None
) -> None:
    """Two agent processes, four tasks at once each, race for short tasks: each task is
    leased once (one attempt each) and each runs once (each appends its id to a file)."""
    server = new_server(tmp_path, url=database)
    servers.append(server)
    ran = tmp_path / "ran"
    command = ["sh", "-c", f'echo "$SAFEBOARD_TASK_ID $SAFEBOARD_ATTEMPT" >> {ran}']
    with api(server) as client:
        ids = []
        for _ in range(RACE_TASKS):
            made = client.post("/api/v1/projects/ml/tasks",
                               json={"command": command, "labels": ["race"]})  # fmt: skip
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
    started = time.monotonic()
    racers = [agents(server, f"race{n}", "--labels", "race", "--max-tasks", "4",
                     gpus=[]) for n in range(2)]  # fmt: skip

    def all_ran() -> bool:
        return ran.exists() and len(ran.read_text().splitlines()) >= RACE_TASKS

    wait_for(all_ran, 120, f"{RACE_TASKS} tasks")
    took = time.monotonic() - started
    for racer in racers:
        assert racer.stop() == 0, racer.err
    runs = Counter(ran.read_text().split("\n")[:-1])
    assert runs == Counter(f"{i} 1" for i in ids)  # each task once, by its first attempt
    with api(server) as client:
        listed = client.get("/api/v1/tasks", params={"project": "ml", "limit": 500}).json()
    states = Counter(t["state"] for t in listed["tasks"])
    assert states == {"succeeded": RACE_TASKS}, states
    assert Counter(t["attempt"] for t in listed["tasks"]) == {1: RACE_TASKS}  # leased once
    served = [racer.out.count(": exit code 0") for racer in racers]
    assert sum(served) == RACE_TASKS
    assert min(served) > 0, served  # both raced
    assert took < 120  # a loaded 2-core machine; bench/agents.py measures the rate


def gpu(index: int) -> dict[str, Any]:
    return {"index": index, "uuid": f"GPU-{index:08d}-e2e", "model": "Fake", "memory_mib": 1024}


SHOW_GPUS = (
    "import json, os, sys, time\n"
    "start = time.time()\n"
    "time.sleep(float(sys.argv[2]))\n"
    "json.dump({'gpus': os.environ['CUDA_VISIBLE_DEVICES'], 'start': start, 'end': time.time()},\n"
    "          open(sys.argv[1], 'w'))\n"
)


def test_gpu_counts_and_labels_match_real_agents(
    agents: Start, servers: list[ServerProcess], tmp_path: Path
) -> None:
    """Fake inventories: a 2-GPU task waits for the 2-GPU agent (the 1-GPU agent never
    leases it); two 1-GPU tasks run at once on the 2-GPU agent with disjoint
    CUDA_VISIBLE_DEVICES; a task's labels keep it from an agent without them."""
    server = new_server(tmp_path)
    servers.append(server)
    small = agents(server, "one-gpu", "--labels", "gpu", gpus=[gpu(0)])
    big_task = submit(server, "gpu", sys.executable, "-c", SHOW_GPUS,
                      str(tmp_path / "big.json"), "0", gpus=2)  # fmt: skip
    labelled = submit(server, "gpu", sys.executable, "-c", SHOW_GPUS,
                      str(tmp_path / "labelled.json"), "0", labels=["gpu", "ib"])  # fmt: skip
    time.sleep(4)  # several of the small agent's long-polls (1 s each)
    with api(server) as client:
        for waiting in (big_task, labelled):
            found = client.get(f"/api/v1/tasks/{waiting}").json()
            assert (found["state"], found["attempts"]) == ("queued", []), found
    assert small.stop() == 0

    big = agents(server, "two-gpus", "--labels", "gpu", gpus=[gpu(1), gpu(2)])
    done = state_of(server, big_task, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert done["attempts"][0]["agent_id"] == big.saved["agent_id"]
    assert set(json.loads((tmp_path / "big.json").read_text())["gpus"].split(",")) == {
        gpu(1)["uuid"], gpu(2)["uuid"]
    }  # fmt: skip
    pair = [submit(server, "gpu", sys.executable, "-c", SHOW_GPUS, str(tmp_path / f"{n}.json"),
                   "3", gpus=1) for n in range(2)]  # fmt: skip
    for task_id in pair:
        assert state_of(server, task_id, "succeeded", "failed")["state"] == "succeeded"
    shown = [json.loads((tmp_path / f"{n}.json").read_text()) for n in range(2)]
    assert shown[0]["gpus"] != shown[1]["gpus"]
    assert {shown[0]["gpus"], shown[1]["gpus"]} == {gpu(1)["uuid"], gpu(2)["uuid"]}
    assert max(s["start"] for s in shown) < min(s["end"] for s in shown)  # at the same time
    assert state_of(server, labelled, "queued")["attempts"] == []  # no agent has "ib"
    assert big.stop() == 0
    labelled_agent = agents(server, "ib", "--labels", "gpu,ib", gpus=[gpu(3)])
    done = state_of(server, labelled, "succeeded", "failed")
    assert done["attempts"][0]["agent_id"] == labelled_agent.saved["agent_id"]
    assert labelled_agent.stop() == 0
