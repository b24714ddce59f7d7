"""Issue 15: first paint of an imported run's chart in safeboard's dashboard against
TensorBoard's own page on the same event file, side by side, in headless Chromium.

For each size (100,000 and 1,000,000 scalars of 4 tags, the file of bench/tb_import.py):

- safeboard: ``safeboard server`` (loopback, SQLite), the file imported with
  ``safeboard import tensorboard``, the browser signed in with the startup link; the page
  is the run's page, ``/runs/<id>``.
- TensorBoard 2.21 (``python -m tensorboard.main``, loopback, ``--reload_interval 0``:
  loaded once, with its Rust data server where installed), waited for until every tag's
  last step is served; the page is its default dashboard, Time Series (``/#timeseries``).

"Painted" (the same rule for both, checked at every animation frame by a script that runs
before the page's own): the first chart holds the run's series, and the frame after it
has been produced. safeboard: the first ``figure.chart`` has ``data-points`` > 0 (set by
chart.js once uPlot has drawn the series on its canvas). TensorBoard: the first
``scalar-card`` shows the run's row with its values (its data table names the run ``run``
and shows numbers: the series has arrived; TensorBoard draws it on a canvas in that frame,
and that canvas's pixels cannot be read back from the page). The figure is that frame's
time from the navigation's start (``performance.now()``), median over ``--repeats``
fresh navigations after one warm-up (both servers' static files in the browser's cache,
as for anyone who opened the page before; safeboard's rollups of the new run made by
then), the pages in turn, each navigation after a second on a blank page. safeboard
draws the 4 charts of the run from one request, in the same frame (within a few ms of
the first); TensorBoard renders only the cards on screen.

    python bench/tb_paint.py            # 100,000 and 1,000,000 scalars: about 2 minutes
    python bench/tb_paint.py --quick    # 100,000 scalars, 3 navigations each
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.seeding import server  # noqa: E402
from bench.tb_import import TAGS, write_file  # noqa: E402
from tests.e2e.browser import chromium  # noqa: E402

PAUSE = 1.0  # seconds on a blank page before each navigation
# Runs at document start on every page, before the page's scripts: resolves
# window.__painted with the time of the frame after the first chart holds its series.
PAINT_WATCH = """
window.__painted = new Promise((done) => {
  const drawn = () => {
    const chart = document.querySelector("figure.chart[data-points]");
    if (chart) return Number(chart.dataset.points) > 0;
    const row = document.querySelector("scalar-card tb-data-table-content-row");
    return Boolean(row && /run/.test(row.textContent) && /[0-9]/.test(row.textContent));
  };
  const frame = () => {
    if (drawn()) requestAnimationFrame(() => done(performance.now()));
    else requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def import_run(data_dir: Path, logdir: Path, work: Path) -> str:
    """``safeboard import tensorboard`` as a user runs it (the discovery file's key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env["SAFEBOARD_DATA_DIR"] = str(data_dir)
    env["SAFEBOARD_SPOOL_DIR"] = str(work / "spool")
    env["SAFEBOARD_CONFIG_DIR"] = str(work / "cfg")
    cmd = [sys.executable, "-m", "safeboard", "import", "tensorboard", str(logdir), "-p", "tb"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"safeboard import failed: {done.stderr}")
    return done.stdout.split("(")[1].split(")")[0]


@contextmanager
def tensorboard(logdir: Path, points: int, work: Path) -> Iterator[str]:
    """TensorBoard on loopback, once it serves every tag up to its last step."""
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
           "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"]  # fmt: skip
    log = (work / f"tensorboard-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    last = points // len(TAGS) - 1
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                found = httpx.get(f"{url}/data/plugin/scalars/scalars",
                                  params={"run": "run", "tag": TAGS[-1]}, timeout=5)  # fmt: skip
                if found.status_code == 200 and found.json() and found.json()[-1][1] == last:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"TensorBoard did not load the file: {(work / log.name).read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def navigate(page: Any, url: str, promise: str) -> float:
    """Milliseconds from a fresh navigation's start to ``promise`` (PAINT_WATCH)."""
    page.goto("about:blank")
    time.sleep(PAUSE)  # what the last page left to do (TensorBoard's teardown) done first
    page.goto(url)
    return float(page.evaluate(promise))


def bench_size(points: int, repeats: int, work: Path) -> dict[str, list[float]]:
    logdir = work / f"logs-{points}"
    write_file(logdir, points)
    data_dir = work / f"safeboard-{points}" / "data"
    results: dict[str, list[float]] = {}
    with server(data_dir) as (url, link), tensorboard(logdir, points, work) as tb_url:
        run_id = import_run(data_dir, logdir, work)
        with chromium() as browser:
            page, watch = browser.new_page()
            page.set_viewport_size({"width": 1366, "height": 768})
            page.context.add_init_script(PAINT_WATCH)
            page.goto(link)
            page.wait_for_url(f"{url}/", timeout=20_000)
            pages = {  # measured in turn, so that the machine's load hits them alike
                "safeboard, first chart painted": (f"{url}/runs/{run_id}", "window.__painted"),
                "TensorBoard Time Series, first card painted": (
                    f"{tb_url}/#timeseries",
                    "window.__painted",
                ),
            }
            for address, promise in pages.values():  # warm-up: static files cached
                navigate(page, address, promise)
            for _ in range(repeats):
                for name, (address, promise) in pages.items():
                    results.setdefault(name, []).append(navigate(page, address, promise))
            watch.page_errors = [e for e in watch.page_errors if tb_url not in e]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 scalars, 3 navigations")
    parser.add_argument("--repeats", type=int, default=None, help="navigations (default 7)")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    repeats = args.repeats or (3 if args.quick else 7)
    table: list[tuple[int, str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="tb-paint-bench-") as tmp:
        for points in sizes:
            work = Path(tmp) / str(points)
            work.mkdir()
            for name, samples in bench_size(points, repeats, work).items():
                table.append((points, name, samples))
    print(f"\nheadless Chromium, 1366x768, median of {repeats} navigations after a warm-up "
          f"(milliseconds from the navigation's start), {os.cpu_count()} cores\n")  # fmt: skip
    print(f"| {'scalars':>9} | {'page':<46} | {'median ms':>9} | {'min':>6} | {'max':>6} |")
    print(f"|{'-' * 10}:|{'-' * 48}|{'-' * 10}:|{'-' * 7}:|{'-' * 7}:|")
    for points, name, samples in table:
        print(f"| {points:>9,} | {name:<46} | {statistics.median(samples):9.0f} | "
              f"{min(samples):6.0f} | {max(samples):6.0f} |")  # fmt: skip
    for points in sizes:
        ours = next(s for p, n, s in table if p == points and n.startswith("safeboard"))
        theirs = next(s for p, n, s in table if p == points and n.startswith("TensorBoard"))
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(
            f"{points:,} scalars: safeboard's first chart paints {ratio:.2f}x as fast as "
            "TensorBoard's first card"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
