"""What open run pages cost the server while their run logs (issue 12).

    python bench/live_page.py                  # 3 rounds of 10 s alone + 30 s with 10 tabs
    python bench/live_page.py --quick          # 1 round of 5 s + 10 s
    PYTHONPATH=/tmp/old/src python bench/live_page.py --pattern old   # a checkout before 12

Starts a safeboard server (HTTPS, SQLite, a temporary data directory) and a run that logs
5 metrics at 100 steps/s through the SDK; measures the server's CPU while the run logs
alone, then with 10 simulated tabs of the run's page open, each making the requests the
page's JavaScript makes, at the same moments:

- on opening: the page, its artifacts, the run's event stream and its charts' histories;
- then, on the stream's ``metrics`` events, ``--pattern new`` (run.js after issue 12):
  at most one request a second per tab for the points after each chart's last step
  (``/history?metric=..&after_step=..``); ``--pattern old`` (before): each chart reloads
  its whole downsampled history at most once a second (``/metrics/{key}?buckets=``).

Prints, per round and as medians, the server's CPU seconds per second (its process tree,
from /proc) alone and with the tabs, the cost of one tab, and the tabs' requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from endpoints import Endpoint
from procs import tree_pids
from run import say, sdk_env, start_safeboard

KEYS = [f"train/metric{i}" for i in range(5)]
BUCKETS = 600  # a chart's width in pixels on a laptop (chart.js: 100 to 2,000)
TICK = os.sysconf("SC_CLK_TCK")

LOGGER = textwrap.dedent(
    """
    import sys, time
    import safeboard

    keys, seconds = sys.argv[1].split(","), float(sys.argv[2])
    run = safeboard.init(project="live-bench", name="live")
    print(run.id, flush=True)
    began = time.monotonic()
    step = 0
    while time.monotonic() - began < seconds:
        run.log({k: step * 0.001 + i for i, k in enumerate(keys)}, step=step)
        step += 1
        time.sleep(max(0.0, began + step / 100 - time.monotonic()))  # 100 steps/s
    run.finish()
    """
)


def server_cpu(pid: int) -> float:
    """User and system CPU seconds of the server's process tree so far."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


@dataclass
class Tab:
    """One open run page: the requests of run.js and chart.js, on the same events."""

    endpoint: Endpoint
    run_id: str
    pattern: str
    stop: threading.Event
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)
    last: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, client: httpx.Client, path: str, **params: Any) -> httpx.Response:
        response = client.get(path, params=params or None)
        self.requests += 1
        if response.status_code != 200:
            self.errors.append(f"{path}: {response.status_code} {response.text[:200]}")
        return response

    def history(self, client: httpx.Client, **params: Any) -> None:
        path = f"/api/v1/runs/{self.run_id}/history"
        answer = self.get(client, path, metric=KEYS, buckets=BUCKETS, **params)
        for key, got in answer.json().get("metrics", {}).items():
            steps = got.get("steps", got.get("last_step"))
            if steps:
                self.last[key] = steps[-1]

    def open(self, client: httpx.Client) -> None:
        self.get(client, f"/runs/{self.run_id}")
        self.get(client, f"/api/v1/runs/{self.run_id}/artifacts", limit=100)
        if self.pattern == "new":
            self.history(client)
        else:
            for key in KEYS:
                self.get(client, f"/api/v1/runs/{self.run_id}/metrics/{key}", buckets=BUCKETS)

    def listen(self) -> None:
        """The page's EventSource: which metrics moved."""
        try:
            self._listen()
        except httpx.HTTPError as exc:
            if not self.stop.is_set():  # (at the end the server goes first)
                self.errors.append(f"event stream: {exc}")

    def _listen(self) -> None:
        with self.endpoint.client() as client:
            path = f"/api/v1/runs/{self.run_id}/events"
            with client.stream("GET", path, timeout=httpx.Timeout(None)) as stream:
                event = ""
                for line in stream.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "metrics":
                        data = json.loads(line.split(":", 1)[1])
                        with self.lock:
                            self.moved |= set(data["data"].get("last_step", {}))

    def follow(self) -> None:
        try:
            self._follow()
        except httpx.HTTPError as exc:
            if not self.stop.is_set():  # (at the end the server goes first)
                self.errors.append(f"polling: {exc}")

    def _follow(self) -> None:
        """run.js's timers: new, one tail request a second for the charts that moved;
        old, each moved chart reloads its whole history a second after it moved."""
        due: dict[str, float] = {}
        with self.endpoint.client() as client:
            self.open(client)
            while not self.stop.is_set():
                now = time.monotonic()
                with self.lock:
                    for key in self.moved:
                        due.setdefault(key if self.pattern == "old" else "*", now + 1.0)
                    moved, self.moved = self.moved, set()
                for name, when in list(due.items()):
                    if when > now:
                        continue
                    del due[name]
                    if self.pattern == "old":
                        path = f"/api/v1/runs/{self.run_id}/metrics/{name}"
                        self.get(client, path, buckets=BUCKETS)
                    else:
                        keys = [k for k in KEYS if k in moved or k in self.last]
                        after = [self.last.get(k, 0) for k in keys]
                        self.history(client, after_step=after)
                self.stop.wait(0.02)


def one_round(
    work: Path, pattern: str, tabs: int, alone_s: float, with_tabs_s: float
) -> dict[str, float]:
    server, endpoint = start_safeboard(work, [sys.executable, "-m", "safeboard"])
    logger = None
    try:
        script = work / "logger.py"
        script.write_text(LOGGER)
        seconds = alone_s + with_tabs_s + 15
        logger = subprocess.Popen(
            [sys.executable, str(script), ",".join(KEYS), str(seconds)],
            env=sdk_env(work, endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert logger.stdout is not None
        run_id = logger.stdout.readline().strip()
        if not run_id:
            raise RuntimeError(
                f"the logger did not start: {logger.stderr.read() if logger.stderr else ''}"
            )
        time.sleep(2.0)  # the SDK's first batches are in
        cpu0, t0 = server_cpu(server.pid), time.monotonic()
        time.sleep(alone_s)
        alone = (server_cpu(server.pid) - cpu0) / (time.monotonic() - t0)

        stop = threading.Event()
        opened = [Tab(endpoint, run_id, pattern, stop) for _ in range(tabs)]
        threads = [threading.Thread(target=t.listen, daemon=True) for t in opened]
        threads += [threading.Thread(target=t.follow, daemon=True) for t in opened]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # pages opened, streams connected
        cpu1, t1, r1 = server_cpu(server.pid), time.monotonic(), sum(t.requests for t in opened)
        time.sleep(with_tabs_s)
        elapsed = time.monotonic() - t1
        busy = (server_cpu(server.pid) - cpu1) / elapsed
        rate = (sum(t.requests for t in opened) - r1) / elapsed
        stop.set()
        errors = [e for t in opened for e in t.errors]
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
        return {
            "alone": alone,
            "with_tabs": busy,
            "per_tab": (busy - alone) / tabs,
            "requests": rate,
        }
    finally:
        if logger is not None:
            logger.kill()
            logger.wait()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", choices=("new", "old"), default="new",
                        help="the page's requests after issue 12 or before")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--tabs", type=int, default=10)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    alone_s, with_tabs_s = (5.0, 10.0) if args.quick else (10.0, 30.0)
    results = []
    for i in range(rounds):
        with tempfile.TemporaryDirectory(prefix="sb-live-") as tmp:
            say(f"round {i + 1}/{rounds}: pattern {args.pattern}, {args.tabs} tabs")
            got = one_round(Path(tmp), args.pattern, args.tabs, alone_s, with_tabs_s)
            say("  " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()))
            results.append(got)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"pattern {args.pattern}, {args.tabs} tabs, median of {rounds} round(s) "
          f"({with_tabs_s:.0f} s with tabs):")  # fmt: skip
    print(f"  server CPU s/s, the run logging alone : {median['alone']:.3f}")
    print(f"  server CPU s/s, with {args.tabs} tabs open     : {median['with_tabs']:.3f}")
    print(f"  server CPU s/s per open tab           : {median['per_tab']:.4f}")
    print(f"  requests/s from the tabs              : {median['requests']:.1f}")


if __name__ == "__main__":
    main()
