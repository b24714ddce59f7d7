"""The dashboard in headless Chromium (P5): first paint of a 10,000-run project's table and
time until a 100,000-point chart is drawn and interactive.

    python bench/dashboard.py              # about 2 minutes on 2 cores (seeding: most of it)
    python bench/dashboard.py --runs 2000  # quicker, smaller project

Starts ``safeboard server`` on a free port of 127.0.0.1 with a temporary data directory,
seeds it through the services (10,000 runs with params, tags and two metrics each; one
run with 100,000 points), signs Debian's Chromium in with the startup link, and measures
each page several times from a fresh navigation. Prints medians; stops the server at the
end, also on errors. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.browser import chromium  # noqa: E402

from safeboard.cli.local import open_local  # noqa: E402
from safeboard.metrics.codec import Series  # noqa: E402
from safeboard.metrics.service import MetricService  # noqa: E402
from safeboard.projects.service import ProjectService  # noqa: E402
from safeboard.runs.access import run_project  # noqa: E402
from safeboard.runs.repository import activity as run_activity  # noqa: E402
from safeboard.runs.service import RunService  # noqa: E402
from safeboard.storage import open_database  # noqa: E402

REPEATS = 7
CHART_POINTS = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(url, startup link) of a running server; stopped on leaving."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env["SAFEBOARD_DATA_DIR"] = str(data_dir)
    log = data_dir.parent / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "server", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"sign in as \S+: (\S+)", log.read_text(errors="replace"))
            try:
                if found and httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    yield url, found.group(1)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{log.read_text()}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def seed(data_dir: Path, runs: int) -> str:
    """A project of ``runs`` runs, and one run of CHART_POINTS points; its id."""
    rng = np.random.default_rng(1)
    with open_local(data_dir) as local:
        admin = local.principal(local.users.list_all()[0].username)
        engine = open_database(local.settings.database_url)
        ProjectService(engine, activity=run_activity).create(admin, "bench", "10,000 runs")
        run_service, metric_service = RunService(engine), MetricService(engine, runs=run_project)
        started = time.perf_counter()
        for i in range(runs):
            params = {
                "lr": float(10 ** rng.uniform(-5, -1)),
                "batch": int(2 ** rng.integers(4, 10)),
                "opt": {"name": ["sgd", "adam", "adamw"][i % 3], "beta": 0.9},
            }
            tags = {"stage": "sweep", "seed": str(i % 5)}
            run = run_service.create(
                admin, "bench", name=f"sweep-{i:05d}", params=params, tags=tags
            )
            steps = np.arange(10, dtype=np.int64)
            times = np.linspace(0, 10, 10)
            loss = np.exp(-steps / rng.uniform(2, 20))
            batch = {"loss": Series(steps, times, loss), "acc": Series(steps, times, 1 - loss)}
            metric_service.ingest(admin, run.id, secrets.token_hex(8), batch)
            if (i + 1) % 1000 == 0:
                rate = (i + 1) / (time.perf_counter() - started)
                print(f"  seeded {i + 1:,} runs ({rate:,.0f}/s)", flush=True)
        big = run_service.create(admin, "bench", name="long-run", params={"lr": 0.001})
        steps = np.arange(CHART_POINTS, dtype=np.int64)
        values = np.exp(-steps / 20000) + rng.normal(0, 0.02, CHART_POINTS)
        series = Series(steps, np.linspace(0, 3600, CHART_POINTS), values)
        metric_service.ingest(admin, big.id, secrets.token_hex(8), {"loss": series})
        engine.dispose()
        return big.id


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.0f} ms  (min {min(samples):.0f}, max {max(samples):.0f})"


FCP = """() => new Promise((done) => {
  const seen = () => performance.getEntriesByName("first-contentful-paint")[0];
  const nav = performance.getEntriesByType("navigation")[0];
  const answer = () => done({fcp: seen().startTime, ttfb: nav.responseStart,
                             dcl: nav.domContentLoadedEventEnd, bytes: nav.transferSize});
  if (seen()) { answer(); return; }
  new PerformanceObserver(() => { if (seen()) answer(); }).observe({type: "paint", buffered: true});
})"""
CHART_READY = """() => new Promise((done) => {
  const check = () => {
    const mark = performance.getEntriesByName("charts-ready")[0];
    if (mark) done(mark.startTime); else setTimeout(check, 10);
  };
  check();
})"""
WALL_TIME = """() => new Promise((done) => {
  const figure = document.querySelector('figure[data-key="loss"]');
  const t0 = performance.now();
  const select = document.getElementById("x-axis");
  select.value = "time";
  select.dispatchEvent(new Event("change"));
  const check = () => {
    const spent = performance.now() - t0;
    if (figure.dataset.points === "%d") done(spent);
    else if (spent > 30000) done(NaN);
    else setTimeout(check, 5);
  };
  check();
})"""


def measure(page: Any, url: str, script: str, repeats: int = REPEATS) -> list[Any]:
    results = []
    for _ in range(repeats):
        page.goto("about:blank")
        page.goto(url)
        results.append(page.evaluate(script))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with server(data_dir) as (url, link):
            print(f"seeding {args.runs:,} runs and a {CHART_POINTS:,}-point metric ...")
            big = seed(data_dir, args.runs)
            with chromium() as browser:
                page, watch = browser.new_page()
                page.set_viewport_size({"width": 1366, "height": 768})
                page.goto(link)
                page.wait_for_url(f"{url}/", timeout=10_000)
                rows: list[tuple[str, Callable[[], list[float]]]] = []

                def table(query: str) -> list[float]:
                    found = measure(page, f"{url}/projects/bench{query}", FCP)
                    return [r["fcp"] for r in found]

                results = {
                    f"runs table, {args.runs:,} runs, newest first: first paint": table(""),
                    "  sorted by a metric (metrics.loss, ascending)": table(
                        "?sort=metrics.loss&order=asc"
                    ),
                    "  sorted by a param (params.lr)": table("?sort=params.lr"),
                    '  filtered (params.lr > 0.001 and tags.seed = "3")': table(
                        "?filter=params.lr+>+0.001+and+tags.seed+%3D+%223%22"
                    ),
                    f"run page, {CHART_POINTS:,}-point chart: drawn and interactive": measure(
                        page, f"{url}/runs/{big}", CHART_READY
                    ),
                }
                wall = []
                for _ in range(3):
                    page.goto(f"{url}/runs/{big}")
                    page.evaluate(CHART_READY)
                    wall.append(page.evaluate(WALL_TIME % CHART_POINTS))
                results[f"  x axis to wall time (all {CHART_POINTS:,} points fetched)"] = wall
                del rows
                watch.assert_clean()
    print(f"\nheadless Chromium, 1366x768, medians of {REPEATS} fresh navigations:")
    for name, samples in results.items():
        print(f"  {name:<62} {median(samples)}")


if __name__ == "__main__":
    main()
