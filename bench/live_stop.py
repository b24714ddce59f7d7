"""Live streams at a graceful stop and across a restart (issue 13): how long SIGTERM takes
with N dashboards' streams open, whether each stream got its ``closing`` event, and how
many events a client misses across a restart when it reconnects with ``Last-Event-ID``
(as browsers do) and without it (what a page saw before issue 13).

    python bench/live_stop.py            # streams 1, 10, 50; 3 stops each; 120 events
    python bench/live_stop.py --quick    # streams 10; one stop; 60 events

Also what recording each event costs ingest: in process, the same 1,000-point batches
stored by MetricService with the live update recorded (a live_events row in the batch's
transaction, then delivered) and with no live updates at all, interleaved.

A real server process (SQLite, plain HTTP on 127.0.0.1, a temporary data directory), real
sockets. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from procs import free_port

from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.metrics.codec import Series
from safeboard.metrics.service import MetricService
from safeboard.runs.access import run_project
from safeboard.secret_store import ensure_secrets
from safeboard.services import build_services
from safeboard.settings import load_settings
from safeboard.storage import create_engine, upgrade

PATH = "/api/v1/projects/live/events"


class Server:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
        env["SAFEBOARD_DATA_DIR"] = str(data_dir)
        self.url = f"http://127.0.0.1:{port}"
        with (data_dir.parent / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "safeboard", "server", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    self.key = json.loads((data_dir / "discovery.json").read_text())["api_key"]
                    return
            except (httpx.TransportError, OSError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return time.monotonic() - started


class Follower(threading.Thread):
    """One stream, reconnecting after each close as a browser does: after the ``retry:``
    the server sent, with Last-Event-ID when ``resume``; without, after 3 s (what the
    server asked before issue 13)."""

    def __init__(self, url: str, key: str, *, resume: bool, reconnect: bool) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.resume, self.reconnect = url, key, resume, reconnect
        self.steps: list[int] = []
        self.closings = 0
        self.cut = 0
        self.last_id: str | None = None
        self.retry = 0.1 if resume else 3.0
        self.connected = threading.Event()
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            headers = {"Authorization": f"Bearer {self.key}"}
            if self.resume and self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with httpx.stream("GET", f"{self.url}{PATH}", headers=headers,
                                  timeout=30) as response:  # fmt: skip
                    self._read(response)
            except httpx.TransportError:
                self.cut += 1 if self.connected.is_set() else 0
            if not self.reconnect:
                return
            time.sleep(self.retry)

    def _read(self, response: httpx.Response) -> None:
        block: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(": connected"):
                self.connected.set()
            elif line.startswith("retry: ") and self.resume:
                self.retry = int(line.removeprefix("retry: ")) / 1000
            elif line == "" and "event" in block:
                self.last_id = block.get("id", self.last_id)
                if block["event"] == "closing":
                    self.closings += 1
                elif block["event"] == "metrics":
                    self.steps.append(json.loads(block["data"])["data"]["last_step"]["loss"])
                block = {}
            elif ": " in line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                block[name] = value


def _log(url: str, key: str, run_id: str, step: int) -> None:
    body = {"batch_id": f"step-{step:06d}", "metrics": {"loss": {
        "steps": [step], "times": [1.7e9 + step], "values": [0.5]}}}  # fmt: skip
    while True:
        try:
            sent = httpx.post(f"{url}/api/v1/runs/{run_id}/metrics", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            if sent.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def _run(url: str, key: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    httpx.post(f"{url}/api/v1/projects", json={"name": "live"}, headers=headers)
    made = httpx.post(f"{url}/api/v1/projects/live/runs", json={"name": "r"}, headers=headers)
    return str(made.json()["id"])


def stops(work: Path, counts: list[int], repeat: int) -> list[tuple[int, list[float], str]]:
    rows = []
    for count in counts:
        took, closed = [], 0
        for attempt in range(repeat):
            data = work / f"stop-{count}-{attempt}" / "data"
            data.parent.mkdir()
            server = Server(data, free_port())
            _run(server.url, server.key)
            followers = [Follower(server.url, server.key, resume=True, reconnect=False)
                         for _ in range(count)]  # fmt: skip
            for follower in followers:
                follower.connected.wait(30)
            took.append(server.stop())
            for follower in followers:
                follower.join(10)
            closed += sum(f.closings == 1 and f.cut == 0 for f in followers)
        rows.append((count, took, f"{closed}/{count * repeat}"))
    return rows


def restart(work: Path, events: int) -> dict[str, tuple[int, int, int]]:
    data = work / "restart" / "data"
    data.parent.mkdir()
    port = free_port()
    server = Server(data, port)
    key = server.key
    run_id = _run(server.url, key)
    followers = {name: Follower(server.url, key, resume=resume, reconnect=True)
                 for name, resume in (("with Last-Event-ID", True),
                                      ("without (before)", False))}  # fmt: skip
    for follower in followers.values():
        follower.connected.wait(30)
    logged = [0]

    def write() -> None:  # as a training script does: on, whatever the server is doing
        for step in range(events):
            _log(server.url, key, run_id, step)
            logged[0] = step + 1
            time.sleep(0.02)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while logged[0] < events // 2:
        time.sleep(0.01)
    server.stop()
    server = Server(data, port)  # the same port: the same URL for the writer and streams
    writer.join(120)
    time.sleep(2)
    server.stop()
    result = {}
    for name, follower in followers.items():
        follower.done.set()
        got = follower.steps
        result[name] = (events - len(set(got)), len(got) - len(set(got)), follower.closings)
    return result


def ingest_cost(work: Path, batches: int) -> dict[str, float]:
    """Median microseconds per 1,000-point batch (10 keys x 100 steps), by variant."""
    directory = ensure_data_dir(work / "ingest" / "data")
    ensure_secrets(directory)
    settings = load_settings(directory)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    services = build_services(settings, engine)
    made = services.users.add("owner", role=Role.ADMIN, actor="bench")
    owner = Principal(made.id, "owner", Role.ADMIN, CredentialKind.SESSION, Scope.ADMIN)
    services.projects.create(owner, "bench")
    run_id = services.runs.create(owner, "bench", name="r").id
    variants = {
        "with live_events row": services.metrics,
        "no live updates": MetricService(engine, None, runs=run_project),
    }
    took: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(batches):
        steps = np.arange(i * 100, (i + 1) * 100, dtype=np.int64)
        series = Series(steps, steps.astype(np.float64), np.linspace(0, 1, 100))
        columns = {f"key{k}": series for k in range(10)}
        for v, (name, service) in enumerate(variants.items()):
            started = time.perf_counter()
            service.ingest(owner, run_id, f"batch-{v}-{i:08d}", columns)
            took[name].append((time.perf_counter() - started) * 1e6)
    engine.dispose()
    return {name: statistics.median(values) for name, values in took.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 streams, one stop")
    args = parser.parse_args()
    counts, repeat, events = ([10], 1, 60) if args.quick else ([1, 10, 50], 3, 120)
    batches = 300 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="sb-live-stop-") as tmp:
        work = Path(tmp)
        print(f"graceful stop (SIGTERM) with open streams, {os.cpu_count()} cores")
        print(f"{'streams':>8} {'median s':>9} {'max s':>7} {'closed cleanly':>15}")
        for count, took, closed in stops(work, counts, repeat):
            print(f"{count:>8} {statistics.median(took):>9.2f} {max(took):>7.2f} {closed:>15}")
        print(f"\n{events} events, one per batch, the server restarted halfway")
        print(f"{'client':<20} {'lost':>5} {'twice':>6} {'closing seen':>13}")
        for name, (lost, twice, closings) in restart(work, events).items():
            print(f"{name:<20} {lost:>5} {twice:>6} {closings:>13}")
        cost = ingest_cost(work, batches)
        print(f"\ningest in process, SQLite, {batches} batches of 1,000 points (10 keys)")
        print(f"{'variant':<22} {'median us/batch':>16} {'points/s':>10}")
        for name, micros in cost.items():
            print(f"{name:<22} {micros:>16.0f} {1000 / micros * 1e6:>10,.0f}")
        extra = cost["with live_events row"] - cost["no live updates"]
        print(f"recording the event: {extra:+.0f} us per batch")


if __name__ == "__main__":
    main()
