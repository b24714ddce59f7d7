"""The run list sorted by a metric or a param through the API (P10, issue 13): a project
of 10,000 runs, the first page of 50 and the next one, on SQLite and PostgreSQL.

    python bench/sorts.py               # 10,000 runs, SQLite and PostgreSQL: about 6 minutes
    python bench/sorts.py --quick       # 2,000 runs
    python bench/sorts.py --no-postgres # SQLite only

Per database: starts ``safeboard server`` on a free port of 127.0.0.1 with a temporary data
directory (and, for PostgreSQL, a temporary cluster of Debian's PostgreSQL, as the tests
start it), seeds the runs through the services (bench/seeding.py, as bench/dashboard.py
does: params lr, batch, opt.name; tags; metrics loss and acc), signs in and times each
request REPEATS times (``GET /api/v1/projects/bench/runs?sort=...``). Prints the medians
side by side with the target (<= 100 ms) and MLflow's ``search_runs`` ordered by a metric
at 10,000 runs (6.1 s, DESIGN.md). Stops the servers at the end, also on errors. Not part of CI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.configs import signed_in  # noqa: E402
from bench.seeding import seed, server  # noqa: E402
from tests.conftest import _postgres_bindir, _run, _start  # noqa: E402

REPEATS = 20
TARGET_MS = 100
MLFLOW_MS = 6100  # search_runs ordered by a metric, 10,000 runs (DESIGN.md, same machine)
REQUESTS = [
    ("newest first (created)", "sort=created"),
    ("by a metric: metrics.loss, ascending", "sort=metrics.loss&order=asc"),
    ("by a metric: metrics.acc, descending", "sort=metrics.acc&order=desc"),
    ("by a param (number): params.lr", "sort=params.lr&order=desc"),
    ("by a param (text): params.opt.name", "sort=params.opt.name&order=asc"),
    ("by name", "sort=name&order=asc"),
    (
        "metric sort, filtered params.lr > 0.001",
        "sort=metrics.loss&order=asc&filter=params.lr+%3E+0.001",
    ),
]


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """The URL of a database on a temporary PostgreSQL cluster (the tests' own start)."""
    bindir = _postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="safeboard-bench-pg-"))
    shutil.chown(root, user="postgres", group="postgres") if os.geteuid() == 0 else None
    password = secrets.token_urlsafe(24)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, user="postgres", group="postgres")
    data = root / "data"
    init = _run([str(bindir / "initdb"), f"--pgdata={data}", "--username=postgres",
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                 "--locale=C", "--no-sync"], cwd=root)  # fmt: skip
    if init.returncode != 0:
        raise RuntimeError(init.stderr)
    try:
        cluster = _start(bindir, root, data, password)
        with cluster.admin() as admin:
            admin.execute("CREATE DATABASE bench")
        yield cluster.url("bench")
    finally:
        _run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def measure(
    runs: int, database_url: str | None, kept: Path | None = None
) -> dict[str, tuple[float, float]]:
    """Per request: (median ms of the first page, median ms of the second page)."""
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-") as tmp:
        data_dir = kept or Path(tmp) / "data"
        seeded = kept is not None and (kept / "safeboard.db").exists()
        if database_url:
            os.environ["SAFEBOARD__DATABASE__URL"] = database_url  # seeding opens it too
        try:
            with server(data_dir, database_url) as (url, link):
                if not seeded:
                    print(f"  seeding {runs:,} runs ...", flush=True)
                    seed(data_dir, runs)
                client = signed_in(url, link)
                figures = {}
                for label, query in REQUESTS:
                    path = f"/api/v1/projects/bench/runs?limit=50&{query}"
                    first, second = [], []
                    for _ in range(REPEATS):
                        started = time.perf_counter()
                        page = client.get(path)
                        first.append((time.perf_counter() - started) * 1000)
                        page.raise_for_status()
                        cursor = page.json()["next_cursor"]
                        started = time.perf_counter()
                        client.get(f"{path}&cursor={cursor}").raise_for_status()
                        second.append((time.perf_counter() - started) * 1000)
                    figures[label] = (statistics.median(first), statistics.median(second))
                    print(f"  {label}: {figures[label][0]:.1f} ms", flush=True)
                return figures
        finally:
            os.environ.pop("SAFEBOARD__DATABASE__URL", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 runs")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="SQLite: keep the seeded data here, and reuse it when it is there already.",
    )
    args = parser.parse_args()
    runs = args.runs or (2_000 if args.quick else 10_000)
    results = {}
    print("SQLite:", flush=True)
    results["SQLite"] = measure(runs, None, args.data_dir)
    if not args.no_postgres:
        print("PostgreSQL:", flush=True)
        with postgres() as url:
            results["PostgreSQL"] = measure(runs, url)
    names = list(results)
    print(f"\nAPI list of {runs:,} runs, first page of 50 / next page (cursor), median of "
          f"{REPEATS}, ms; target <= {TARGET_MS} ms")  # fmt: skip
    print(f"{'request':44}" + "".join(f"{n:>22}" for n in names))
    for label, _ in REQUESTS:
        cells = "".join(f"{results[n][label][0]:11.1f} /{results[n][label][1]:7.1f} ms"
                        for n in names)  # fmt: skip
        print(f"{label:44}{cells}")
    print(f"{'MLflow search_runs by a metric (DESIGN.md)':44}{MLFLOW_MS:>15,} ms (10,000 runs)")
    worst = max(v[0] for r in results.values() for v in r.values())
    verdict = "met" if worst <= TARGET_MS else "NOT met"
    print(f"\nslowest first page {worst:.1f} ms (target <= {TARGET_MS} ms): {verdict}")


if __name__ == "__main__":
    main()
