"""The dashboard in headless Chromium (P5): first paint of a 10,000-run project's table and
time until a 100,000-point chart is drawn and interactive.

    python bench/dashboard.py              # about 2 minutes on 2 cores (seeding: most of it)
    python bench/dashboard.py --runs 2000  # quicker, smaller project

Starts ``safeboard server`` on a free port of 127.0.0.1 with a temporary data directory,
seeds it through the services (bench/seeding.py: 10,000 runs with params, tags and two
metrics each; one run with 100,000 points), signs Debian's Chromium in with the startup
link, and measures each page several times from a fresh navigation. Prints medians; stops
the server at the end, also on errors. Not part of CI.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeding import CHART_POINTS, seed, server  # noqa: E402
from tests.e2e.browser import chromium  # noqa: E402

REPEATS = 7


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
