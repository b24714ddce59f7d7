"""Downsampled reads against history length (issue 13, P10): one key of 1M, 10M and 100M
points, read downsampled through the HTTPS API of a real safeboard server, on SQLite and on
PostgreSQL; MLflow's get-history of a 1M-point metric beside it (MLflow has no
downsampled read).

    python bench/history_length.py                         # 1M, 10M, 100M points, SQLite
    python bench/history_length.py --quick                 # 1M and 10M
    python bench/history_length.py --database postgresql   # a temporary cluster (initdb)
    python bench/history_length.py --database both --postgres-url postgresql+psycopg://...
    MLFLOW_BIN=/tmp/mlflow-venv/bin/mlflow python bench/history_length.py --mlflow-points 1000000

The points are loaded fast, straight into the database in chunks of 10,000 (what a batch
of 10,000 stores), through safeboard's own repository; the rollups are then made by the
server's own roller, which the first read asks for (a history it finds far behind), and the
time they took is reported. Then, per size: that first read (before rollups: every point
reduced), and the median and p90 of 30 reads at buckets=1000 and 2000 and of 30 zoomed
reads (steps 40% to 60%). Each read is checked: its bucket count, last step and the two
spikes planted in the data (min and max must be exact).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from endpoints import Endpoint, safeboard_run
from procs import Server, free_port, start_server
from run import (
    ML,
    SB,
    Results,
    _ca,
    fmt,
    mlflow_reads,
    running,
    say,
    start_mlflow,
    start_safeboard,
)

from safeboard.metrics import repository, rollups
from safeboard.metrics.codec import Series, encode
from safeboard.storage import create_engine, writer

HERE = Path(__file__).resolve().parent
CHUNK = 10_000
READS = 30
PG = "postgresql"
SPIKE_HIGH, SPIKE_LOW = 1e6, -1e6


def _values(first: int, n: int) -> np.ndarray:
    steps = np.arange(first, first + n, dtype=np.int64)
    return np.sin(steps / 50_000.0) + 0.01 * np.cos(steps * 0.37)


def load(url: str, run_id: str, n: int) -> float:
    """``n`` points of ``loss`` (steps 0..n-1), spikes at n/3 (high) and 2n/3 (low)."""
    engine = create_engine(url)
    table = repository._c
    began = time.perf_counter()
    try:
        for first in range(0, n, 1_000_000):
            size = min(1_000_000, n - first)
            steps = np.arange(first, first + size, dtype=np.int64)
            values = _values(first, size)
            for spike, value in ((n // 3, SPIKE_HIGH), (2 * n // 3, SPIKE_LOW)):
                if first <= spike < first + size:
                    values[spike - first] = value
            times = np.full(size, 1.7e9)
            rows = []
            for at in range(0, size, CHUNK):
                part = Series(
                    steps[at : at + CHUNK], times[at : at + CHUNK], values[at : at + CHUNK]
                )
                s, t, v = encode(part)
                rows.append(
                    {
                        "run_id": run_id,
                        "key": "loss",
                        "first_step": int(part.steps[0]),
                        "last_step": int(part.steps[-1]),
                        "count": len(part),
                        "steps": s,
                        "times": t,
                        "values": v,
                    }
                )
            with writer(engine).begin() as conn:
                conn.execute(sa.insert(table), rows)
                repository.update_summary(conn, run_id, "loss", Series(steps, times, values))
    finally:
        engine.dispose()
    return time.perf_counter() - began


def wait_rolled(url: str, run_id: str, timeout: float) -> float:
    """Seconds until the server's roller has caught up with the key (polled)."""
    engine = create_engine(url)
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < timeout:
            with engine.connect() as conn:
                state = rollups.states(conn, run_id, ["loss"]).get("loss")
            if state is not None and state.shift is not None and not rollups.behind(state):
                return time.perf_counter() - began
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise RuntimeError(f"rollups of {run_id} not made after {timeout:.0f} s")


def _check(body: dict[str, Any], n: int, buckets: int, whole: bool) -> None:
    got = body["metrics"]["loss"]
    if not 0 < len(got["last_step"]) <= buckets:
        raise RuntimeError(f"{len(got['last_step'])} buckets for {buckets} asked")
    if whole and (
        got["last_step"][-1] != n - 1
        or max(got["max"]) != SPIKE_HIGH
        or min(got["min"]) != SPIKE_LOW
    ):
        raise RuntimeError(
            f"wrong answer for {n:,} points: last step {got['last_step'][-1]}, "
            f"max {max(got['max'])}, min {min(got['min'])}"
        )


def timed_reads(client: Any, path: str, params: dict[str, Any], n: int, reads: int) -> list[float]:
    whole = "start" not in params
    out = []
    for _ in range(reads):
        began = time.perf_counter()
        response = client.get(path, params=params)
        out.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    _check(response.json(), n, int(params["buckets"]), whole)
    return out


def measure(
    res: Results, column: str, endpoint: Endpoint, *, url: str, sizes: list[int], reads: int
) -> None:
    for n in sizes:
        label = f"{n / 1e6:g}M points"
        with endpoint.client() as client:
            run_id = safeboard_run(client, f"history-{n}")
            say(f"  {column}: loading {n:,} points")
            seconds = load(url, run_id, n)
            res.put(f"{label}: load (direct), s", column, seconds)
            path = f"/api/v1/runs/{run_id}/history"
            whole = {"metric": "loss", "buckets": 1000}
            first = timed_reads(client, path, whole, n, 1)[0]
            res.put(f"{label}: first read, no rollups yet, ms", column, first)
            rolled = wait_rolled(url, run_id, timeout=3600)
            res.put(f"{label}: rollups made by the server in, s", column, rolled)
            say(
                f"  {column}: {n:,} loaded in {seconds:.1f} s; unrolled read {first:.0f} ms; "
                f"rolled in {rolled:.1f} s"
            )
            zoom = {"metric": "loss", "buckets": 1000, "start": int(n * 0.4), "end": int(n * 0.6)}
            for name, params in (
                ("buckets=1000", whole),
                ("buckets=2000", {**whole, "buckets": 2000}),
                ("zoomed 40-60%, buckets=1000", zoom),
            ):
                times = sorted(timed_reads(client, path, params, n, reads))
                res.put(f"{label}: {name}, median ms", column, statistics.median(times))
                res.put(f"{label}: {name}, p90 ms", column, times[int(len(times) * 0.9)])
                say(f"  {column}: {n:,} {name}: {statistics.median(times):.1f} ms median")


def start_with(work: Path, url: str | None) -> tuple[Server, Endpoint]:
    """bench/run.py's start_safeboard, with ``--database-url`` when one is given."""
    if url is None:
        return start_safeboard(work, [sys.executable, "-m", "safeboard"])
    data, port = work / "safeboard-data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    cmd = [
        sys.executable,
        "-m",
        "safeboard",
        "server",
        "--tls",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--database-url",
        url,
    ]

    def ready() -> bool:
        try:
            info = json.loads((data / "discovery.json").read_text())
            health = httpx.get(
                f"{info['url']}/healthz",
                verify=_ca(info["tls"]["ca_cert"]),
                timeout=2,
                trust_env=False,
            )
        except (httpx.HTTPError, KeyError, OSError, ValueError):
            return False
        return health.status_code == 200

    server = start_server(
        SB,
        cmd,
        url=f"https://127.0.0.1:{port}",
        log_path=work / "safeboard.log",
        ready=ready,
        env=env,
        timeout=120,
    )
    info = json.loads((data / "discovery.json").read_text())
    return server, Endpoint(SB, info["url"], f"Bearer {info['api_key']}", info["tls"]["ca_cert"])


@contextmanager
def temporary_postgres(parent: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (as in tests/conftest.py) in a new directory of
    ``parent``, its URL; stopped and removed after."""
    bindir = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    # Its own directory under /tmp: as root, initdb runs as postgres, which cannot enter
    # the private work directory.
    root = Path(tempfile.mkdtemp(prefix="safeboard-bench-pg-", dir=parent))
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(root, user="postgres", group="postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        [
            *as_pg,
            str(bindir / "initdb"),
            f"--pgdata={data}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=root,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    subprocess.run(
        [
            *as_pg,
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-o",
            options,
        ],
        check=True,
        capture_output=True,
        cwd=root,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
            capture_output=True,
            check=False,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)


def bench_database(res: Results, kind: str, work: Path, args: argparse.Namespace) -> None:
    home = work / kind
    home.mkdir()
    with (
        _database(kind, work.parent, args.postgres_url) as pg_url,
        running(lambda: start_with(home, pg_url)) as (_server, endpoint),
    ):
        url = pg_url or f"sqlite:///{home / 'safeboard-data' / 'safeboard.db'}"
        measure(res, kind, endpoint, url=url, sizes=args.sizes, reads=args.reads)


@contextmanager
def _database(kind: str, parent: Path, given: str | None) -> Iterator[str | None]:
    """None for SQLite (the server's own file), else a PostgreSQL URL."""
    if kind != PG:
        yield None
    elif given is not None:
        yield given
    else:
        with temporary_postgres(parent) as url:
            yield url


def bench_mlflow(res: Results, work: Path, mlflow: str, points: int) -> None:
    home = work / "mlflow-home"
    home.mkdir()
    with running(lambda: start_mlflow(home, mlflow, auth=False)) as (_server, endpoint):
        plan = SimpleNamespace(ml_read_points=points, history_reads=1 if points > 200_000 else 3)
        mlflow_reads(res, endpoint, plan)  # type: ignore[arg-type]


def table(res: Results, columns: list[str]) -> str:
    rows = list(dict.fromkeys(row for row in res.cells))
    width = max(len(r) for r in rows) + 2
    head = "".join(f"{c:>16}" for c in columns)
    lines = [f"{'':<{width}}{head}"]
    for row in rows:
        cells = "".join(f"{fmt(res.cells[row].get(c)):>16}" for c in columns)
        lines.append(f"{row:<{width}}{cells}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M and 10M points only")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(float(x)) for x in s.split(",")],
        help="comma-separated point counts (default 1e6,1e7,1e8)",
    )
    parser.add_argument("--database", choices=["sqlite", PG, "both"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        help="an empty PostgreSQL database (default: a "
        "temporary cluster from /usr/lib/postgresql/*/bin)",
    )
    parser.add_argument("--reads", type=int, default=READS)
    parser.add_argument(
        "--mlflow",
        default=os.environ.get("MLFLOW_BIN"),
        help="MLflow's command (default $MLFLOW_BIN; none: no MLflow column)",
    )
    parser.add_argument(
        "--mlflow-points",
        type=int,
        default=None,
        help="points of MLflow's history read (default 1,000,000; --quick 100,000)",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="where the databases go (100M points: about 2.5 GB a database)",
    )
    args = parser.parse_args()
    args.sizes = args.sizes or (
        [1_000_000, 10_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    )
    kinds = ["sqlite", PG] if args.database == "both" else [args.database]
    res = Results()
    work = Path(tempfile.mkdtemp(prefix="safeboard-history-", dir=args.work_dir))
    try:
        for kind in kinds:
            bench_database(res, kind, work, args)
        columns = list(kinds)
        if args.mlflow and shutil.which(args.mlflow):
            points = args.mlflow_points or (100_000 if args.quick else 1_000_000)
            bench_mlflow(res, work, args.mlflow, points)
            columns.append(ML)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(res, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
