"""A benchmark's server and its seeded project, shared by bench/dashboard.py (P5 in
Chromium), bench/sorts.py (the run list sorted through the API) and bench/configs.py and
bench/memory.py (the server alone).

``server()`` starts ``safeboard server`` on a free port of 127.0.0.1 with a data directory
of the caller's (and, given, another database), waits until it answers ``/healthz`` and
yields its URL and startup link; it stops the server on leaving, also on errors.
``seed()`` fills a project ``bench`` through the services: ``runs`` runs with params
(lr, batch, opt.name), tags (stage, seed) and two metrics (loss, acc), and one run of
CHART_POINTS points of ``loss``. Not part of CI.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safeboard.cli.local import open_local  # noqa: E402
from safeboard.metrics.codec import Series  # noqa: E402
from safeboard.metrics.service import MetricService  # noqa: E402
from safeboard.projects.service import ProjectService  # noqa: E402
from safeboard.runs.access import run_project  # noqa: E402
from safeboard.runs.repository import activity as run_activity  # noqa: E402
from safeboard.runs.service import RunService  # noqa: E402
from safeboard.storage import open_database  # noqa: E402

__all__ = ["CHART_POINTS", "free_port", "seed", "server"]

CHART_POINTS = 100_000
START_SECONDS = 90  # PostgreSQL's first migrations on a loaded machine take a while


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(data_dir: Path, database_url: str | None = None) -> Iterator[tuple[str, str]]:
    """(url, startup link) of a running server on ``database_url`` (None: SQLite in
    ``data_dir``); stopped on leaving. Its log is ``server.log`` beside ``data_dir``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env["SAFEBOARD_DATA_DIR"] = str(data_dir)
    if database_url:
        env["SAFEBOARD__DATABASE__URL"] = database_url
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "server", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"sign in as \S+: (\S+)", log.read_text(errors="replace"))
            with suppress(httpx.TransportError):
                if found and httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    yield url, found.group(1)
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{log.read_text()}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def seed(data_dir: Path, runs: int) -> str:
    """A project ``bench`` of ``runs`` runs, and one run of CHART_POINTS points; its id.
    The database is the one the data directory's settings name (SAFEBOARD__DATABASE__URL
    in this process's environment for another)."""
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
