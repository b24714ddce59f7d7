"""Agents through real processes (P8, issue 14): submit-to-running latency with a waiting
agent, 1,000 short tasks through 4 agents, and an agent's memory; SQLite and PostgreSQL.

    python bench/agents.py                # 50 latency rounds, 1,000 tasks; both databases
    python bench/agents.py --quick        # 15 rounds, 200 tasks
    python bench/agents.py --no-postgres  # SQLite only

Per database: a real ``safeboard server --tls`` in a temporary data directory (PostgreSQL:
a temporary cluster, bench/sweep_pg.py), agents enrolled with ``safeboard agent token`` and
``safeboard agent join`` and run as ``safeboard agent run`` processes with no GPUs (a fake
empty inventory), tasks submitted over HTTPS with the server's API key.

- Submit-to-running: one agent waits in its long-poll; a task ``sh -c 'date +%s.%N > F'``
  is submitted; the figure is the time from just before the submit request to the wall
  time the task's process wrote (the same machine's clock): lease, the agent's
  ``starting`` report, its directory, the fork and exec. Then the task's exit is awaited
  and the agent is given 0.3 s to be back in its long-poll. Target (P8): median <= 1 s.
- Throughput: N tasks ``sh -c 'echo $ID >> F'`` are submitted by 4 threads (timed
  apart), then 4 agents (``--max-tasks 4`` each) start at once; wall time from their
  start (Python's start and the hello included, shown apart) to the last task recorded
  ``succeeded``. Each task appends its id and attempt to one file: every id must appear
  once, every task must have had exactly one attempt (P8: none run twice).
- Memory: the RSS of one agent process (VmRSS, /proc; its tasks are separate processes
  and not counted) idle in its long-poll, and its peak while it runs 4 tasks (``sleep``).

Peers: none of the anchors can run on this machine (ClearML's agent needs its server and
Docker; Determined's agent its master; no Docker here), so only safeboard's figures are
printed, each beside the issue's target. Not part of CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from endpoints import Endpoint
from procs import MIB
from run import say, start_safeboard
from sweep_pg import postgres_cluster

SAFEBOARD = [sys.executable, "-m", "safeboard"]
LATENCY_TARGET_S = 1.0
AGENTS, TASKS_AT_ONCE = 4, 4


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env.update(extra)
    return env


@dataclass
class Agent:
    name: str
    process: subprocess.Popen[bytes]
    out: Path

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MIB
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Fleet:
    """Agents of one server: each joins with its own token and runs in its own process."""

    def __init__(self, work: Path, server_data: Path, url: str) -> None:
        self.work = work
        self.server_env = _env({"SAFEBOARD_DATA_DIR": str(server_data)})
        self.agent_env = _env({"HOME": str(work / "agent-home"),
                               "SAFEBOARD_AGENT_FAKE_GPUS": "[]"})  # fmt: skip
        self.url = url
        self.started: list[Agent] = []

    def start(self, name: str, label: str, max_tasks: int) -> Agent:
        agent = self.launch(self.join(name), label, max_tasks)
        self.wait_serving(agent)
        return agent

    def join(self, name: str) -> Path:
        """A new agent's state directory: ``agent token`` on the server, ``agent join``."""
        made = subprocess.run(
            [*SAFEBOARD, "agent", "token", "--pool", "bench"],
            env=self.server_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        state = self.work / "agents" / name
        subprocess.run(
            [*SAFEBOARD, "agent", "join", made.stdout.strip(), "--state-dir", str(state)],
            env=self.agent_env, capture_output=True, check=True,
        )  # fmt: skip
        return state

    def launch(self, state: Path, label: str, max_tasks: int) -> Agent:
        """``agent run`` for the agent of ``state``, not waited for."""
        name = state.name
        out = self.work / f"agent-{name}.log"
        with out.open("wb") as log:
            process = subprocess.Popen(
                [*SAFEBOARD, "agent", "run", "--state-dir", str(state), "--labels", label,
                 "--max-tasks", str(max_tasks), "--poll", "20s"],
                env=self.agent_env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        agent = Agent(name, process, out)
        self.started.append(agent)
        return agent

    @staticmethod
    def wait_serving(agent: Agent) -> None:
        deadline = time.monotonic() + 60
        while b"serving" not in agent.out.read_bytes():
            if agent.process.poll() is not None or time.monotonic() > deadline:
                tail = agent.out.read_text()[-2000:]
                raise RuntimeError(f"agent {agent.name} did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to every agent first (each drains its long-poll), then wait for each."""
        for agent in self.started:
            if agent.process.poll() is None:
                agent.process.send_signal(signal.SIGTERM)
        for agent in self.started:
            agent.stop()


def client_of(endpoint: Endpoint) -> httpx.Client:
    return httpx.Client(base_url=endpoint.url, verify=endpoint.verify(), timeout=30,
                        headers={"Authorization": endpoint.auth_header or ""})  # fmt: skip


@contextlib.contextmanager
def served(work: Path, database_url: str | None) -> Iterator[tuple[Endpoint, Fleet]]:
    env = {"SAFEBOARD__DATABASE__URL": database_url} if database_url else {}
    server, endpoint = start_safeboard(work, SAFEBOARD, env)
    fleet = Fleet(work, work / "safeboard-data", endpoint.url)
    try:
        with client_of(endpoint) as client:
            for project in ("latency", "bulk", "memory"):
                client.post("/api/v1/projects", json={"name": project}).raise_for_status()
        yield endpoint, fleet
    finally:
        fleet.stop()
        server.stop()


def submit(client: httpx.Client, project: str, command: list[str]) -> int:
    made = client.post(f"/api/v1/projects/{project}/tasks",
                       json={"command": command, "labels": [project]})  # fmt: skip
    made.raise_for_status()
    return int(made.json()["id"])


def wait_state(client: httpx.Client, task_id: int, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(client.get(f"/api/v1/tasks/{task_id}").json()["state"])
        if state in states:
            return state
        time.sleep(0.02)
    raise RuntimeError(f"task {task_id} not in {states} within {timeout} s")


def latency(client: httpx.Client, fleet: Fleet, work: Path, rounds: int) -> list[float]:
    fleet.start("waiting", "latency", 1)
    marks = work / "marks"
    marks.mkdir()
    mark = f"{marks}/$SAFEBOARD_TASK_ID"
    command = ["sh", "-c", f"date +%s.%N > {mark}.tmp && mv {mark}.tmp {mark}"]
    found = []
    for _ in range(rounds):
        sent = time.time()
        task_id = submit(client, "latency", command)
        written = marks / str(task_id)
        deadline = time.monotonic() + 60
        while not written.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task_id} did not run within 60 s")
            time.sleep(0.005)
        found.append(float(written.read_text()) - sent)
        if wait_state(client, task_id, {"succeeded", "failed"}) != "succeeded":
            raise RuntimeError(f"task {task_id} failed")
        time.sleep(0.3)  # the agent back in its long-poll
    return found


def live_tasks(client: httpx.Client, project: str) -> int:
    live = ["queued", "leased", "starting", "running", "cancelling"]
    listed = client.get("/api/v1/tasks", params={"project": project, "state": live, "limit": 500})
    return len(listed.json()["tasks"])


def all_tasks(client: httpx.Client, project: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    before = None
    while True:
        params: dict[str, Any] = {"project": project, "limit": 500}
        if before is not None:
            params["before"] = before
        page = client.get("/api/v1/tasks", params=params).json()
        found += page["tasks"]
        before = page["next_before"]
        if before is None:
            return found


def throughput(
    endpoint: Endpoint, client: httpx.Client, fleet: Fleet, work: Path, tasks: int
) -> dict[str, Any]:
    states = [fleet.join(f"bulk{n}") for n in range(AGENTS)]
    ran = work / "ran"
    command = ["sh", "-c", f'echo "$SAFEBOARD_TASK_ID $SAFEBOARD_ATTEMPT" >> {ran}']
    started = time.monotonic()
    errors: list[BaseException] = []

    def submitter(count: int) -> None:
        try:
            with client_of(endpoint) as own:
                for _ in range(count):
                    submit(own, "bulk", command)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    shares = [tasks // 4 + (1 if i < tasks % 4 else 0) for i in range(4)]
    threads = [threading.Thread(target=submitter, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    submitted = time.monotonic() - started
    started = time.monotonic()  # the queue is full: the agents start now, all at once
    for agent in [fleet.launch(state, "bulk", TASKS_AT_ONCE) for state in states]:
        fleet.wait_serving(agent)
    serving = time.monotonic() - started
    deadline = time.monotonic() + 600
    while live_tasks(client, "bulk") or len(_lines(ran)) < tasks:
        if time.monotonic() > deadline:
            raise RuntimeError("the tasks did not finish within 10 minutes")
        time.sleep(0.1)
    wall = time.monotonic() - started
    runs = Counter(line.split()[0] for line in _lines(ran))
    listed = all_tasks(client, "bulk")
    return {
        "tasks": tasks,
        "submit_s": submitted,
        "startup_s": serving,
        "wall_s": wall,
        "rate": tasks / wall,
        "ran_twice": sum(1 for count in runs.values() if count > 1),
        "never_ran": tasks - len(runs),
        "extra_attempts": sum(t["attempt"] - 1 for t in listed),
        "not_succeeded": sum(1 for t in listed if t["state"] != "succeeded"),
    }


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def memory(client: httpx.Client, fleet: Fleet) -> tuple[float, float]:
    agent = fleet.start("memory", "memory", TASKS_AT_ONCE)
    time.sleep(2)  # settled in its long-poll
    idle = agent.rss_mib()
    ids = [submit(client, "memory", ["sleep", "4"]) for _ in range(TASKS_AT_ONCE)]
    for task_id in ids:
        wait_state(client, task_id, {"running"})
    peak = 0.0
    while any(client.get(f"/api/v1/tasks/{i}").json()["state"] == "running" for i in ids):
        peak = max(peak, agent.rss_mib())
        time.sleep(0.2)
    return idle, peak


def measure(name: str, database_url: str | None, rounds: int, tasks: int) -> dict[str, Any]:
    say(f"{name}: starting a server")
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-agents-") as tmp:
        work = Path(tmp)
        with served(work, database_url) as (endpoint, fleet), client_of(endpoint) as client:
            say(f"{name}: submit-to-running, {rounds} rounds")
            waits = latency(client, fleet, work, rounds)
            say(f"{name}: {tasks:,} tasks through {AGENTS} agents")
            bulk = throughput(endpoint, client, fleet, work, tasks)
            say(f"{name}: agent memory")
            idle, busy = memory(client, fleet)
    return {"latency": waits, "bulk": bulk, "idle_mib": idle, "busy_mib": busy}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def table(results: dict[str, dict[str, Any]], rounds: int, tasks: int) -> None:
    names = list(results)
    width = 44
    print(f"\nAgents through real processes (TLS server, `safeboard agent run`); "
          f"{rounds} latency rounds, {tasks:,} tasks")  # fmt: skip
    print(f"{'':{width}}" + "".join(f"{n:>14}" for n in names) + f"{'target (P8)':>22}")

    def row(label: str, values: list[str], target: str = "-") -> None:
        print(f"{label:{width}}" + "".join(f"{v:>14}" for v in values) + f"{target:>22}")

    lat = [results[n]["latency"] for n in names]
    row("submit-to-running median, s", [f"{statistics.median(v):.3f}" for v in lat], "<= 1 s")
    row("submit-to-running p99, s", [f"{percentile(v, 0.99):.3f}" for v in lat])
    row("submit-to-running max, s", [f"{max(v):.3f}" for v in lat])
    bulk = [results[n]["bulk"] for n in names]
    row(f"submitting {tasks:,} tasks (4 threads), s", [f"{b['submit_s']:.1f}" for b in bulk])
    row(f"{tasks:,} queued tasks, {AGENTS} agents: wall, s", [f"{b['wall_s']:.1f}" for b in bulk])
    row("  of which the agents' start, s", [f"{b['startup_s']:.1f}" for b in bulk])
    row("  tasks/s", [f"{b['rate']:.1f}" for b in bulk])
    row("  tasks run twice", [str(b["ran_twice"]) for b in bulk], "0")
    row("  tasks never run", [str(b["never_ran"]) for b in bulk], "0")
    row("  attempts beyond the first", [str(b["extra_attempts"]) for b in bulk], "0")
    row("  tasks not succeeded", [str(b["not_succeeded"]) for b in bulk], "0")
    row("agent RSS idle, MiB", [f"{results[n]['idle_mib']:.1f}" for n in names], "none set")
    row(f"agent RSS running {TASKS_AT_ONCE} tasks (peak), MiB",
        [f"{results[n]['busy_mib']:.1f}" for n in names], "none set")  # fmt: skip
    print("\nPeers: none measured. ClearML's agent needs its server (and Docker), "
          "Determined's agent its master;\nneither can run here, so these are safeboard's "
          "figures alone.")  # fmt: skip
    worst = max(statistics.median(v) for v in lat)
    twice = sum(b["ran_twice"] + b["extra_attempts"] + b["never_ran"] for b in bulk)
    print(f"submit-to-running median {worst:.3f} s (target <= {LATENCY_TARGET_S:g} s): "
          f"{'met' if worst <= LATENCY_TARGET_S else 'NOT met'}; tasks run twice or not at "
          f"all: {twice} ({'met' if twice == 0 else 'NOT met'})")  # fmt: skip


def main() -> None:
    # The server, the CLI and the agents run this checkout's safeboard, whatever is installed.
    source = str(Path(__file__).resolve().parent.parent / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 rounds, 200 tasks")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures")
    args = parser.parse_args()
    rounds = args.rounds or (15 if args.quick else 50)
    tasks = args.tasks or (200 if args.quick else 1_000)
    results = {"SQLite": measure("SQLite", None, rounds, tasks)}
    if not args.no_postgres:
        with postgres_cluster() as url:
            results["PostgreSQL"] = measure("PostgreSQL", url, rounds, tasks)
    table(results, rounds, tasks)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
