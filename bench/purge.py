"""Purging a big run while another run ingests (issue 18): how long the writer waits.

A run of N points (chunks of 100 points, 10 keys: an SDK batch every 100 steps) is
deleted two ways on SQLite, each
while another run takes one small batch every few milliseconds through the same
MetricService (the server's ingest path, group commit included):

- "one DELETE": the run's row deleted in one transaction, ON DELETE CASCADE removing every
  metric row with it (what deleting a run amounted to before the trash);
- "batched purge": safeboard's purge (storage/purge.py), ``retention.purge_batch_rows``
  rows a transaction.

It prints, side by side, how long each took and the concurrent writer's acknowledgement
latencies (median, p99, max): the batched purge keeps the max near one batch's cost.

    python bench/purge.py            # 2,000,000 points
    python bench/purge.py --quick    # 200,000 points
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.ids import new_id
from safeboard.metrics.codec import Series
from safeboard.secret_store import ensure_secrets
from safeboard.services import Services, build_services
from safeboard.settings import load_settings
from safeboard.storage import create_engine, upgrade, writer
from safeboard.storage.purge import purge_row

CHUNK = 100  # points a chunk row: what an SDK batch of 100 steps stores per key
KEYS = 10


def _services(root: Path, batch: int) -> tuple[Services, Principal]:
    directory = ensure_data_dir(root / "data")
    ensure_secrets(directory)
    settings = load_settings(directory, retention={"purge_batch_rows": batch})
    engine = create_engine(settings.database_url)
    upgrade(engine)
    services = build_services(settings, engine)
    user = services.users.add("bench", role=Role.ADMIN, actor="bench")
    principal = Principal(user.id, "bench", Role.ADMIN, CredentialKind.SESSION, Scope.ADMIN)
    services.projects.create(principal, "bench")
    return services, principal


def _load(services: Services, principal: Principal, points: int) -> str:
    run = services.runs.create(principal, "bench", name="big")
    per_key = points // KEYS
    for start in range(0, per_key, CHUNK):
        steps = np.arange(start, min(start + CHUNK, per_key), dtype=np.int64)
        series = Series(steps, 1.7e9 + steps.astype(np.float64), np.sin(steps / 100.0))
        services.metrics.ingest(principal, run.id, new_id(), {f"k{k}": series for k in range(KEYS)})
    return run.id


def _while_ingesting(
    services: Services, principal: Principal, action: object
) -> tuple[float, list[float]]:
    other = services.runs.create(principal, "bench", name="writer").id
    stop = threading.Event()
    latencies: list[float] = []

    def write() -> None:
        step = 0
        while not stop.is_set():
            steps = np.array([step], dtype=np.int64)
            began = time.perf_counter()
            point = Series(steps, np.array([1.7e9]), np.array([0.5]))
            services.metrics.ingest(principal, other, new_id(), {"loss": point})
            latencies.append(time.perf_counter() - began)
            step += 1
            time.sleep(0.005)

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    began = time.perf_counter()
    action()
    took = time.perf_counter() - began
    time.sleep(0.2)
    stop.set()
    thread.join()
    return took, latencies


def _one_delete(engine: sa.Engine, run_id: str) -> None:
    with writer(engine).begin() as conn:
        conn.execute(sa.text("DELETE FROM runs WHERE id = :r"), {"r": run_id})


def _row(name: str, took: float, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:<16} {took:>9.2f} s {statistics.median(ms):>10.1f} {p99:>10.1f} "
            f"{ms[-1]:>10.1f} {len(ms):>8}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 points, not 2,000,000")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--batch", type=int, default=500, help="rows a purge transaction")
    args = parser.parse_args()
    points = args.points or (200_000 if args.quick else 2_000_000)
    rows = []
    for name in ("one DELETE", "batched purge"):
        with tempfile.TemporaryDirectory() as tmp:
            services, principal = _services(Path(tmp), args.batch)
            run_id = _load(services, principal, points)
            engine = services.engine
            action: Callable[[], object] = functools.partial(_one_delete, engine, run_id)
            if name == "batched purge":
                action = functools.partial(purge_row, engine, "runs", run_id, batch=args.batch)
            took, lat = _while_ingesting(services, principal, action)
            rows.append(_row(name, took, lat))
            services.metrics.rollups.stop()
            services.streams.stop()
            engine.dispose()
    print(
        f"purging a run of {points:,} points ({points // CHUNK:,} chunks) on SQLite, "
        f"purge batch {args.batch} rows; a writer ingesting one batch every 5 ms meanwhile"
    )
    print(f"{'how':<16} {'purge':>11} {'ack p50 ms':>10} {'p99 ms':>10} {'max ms':>10} {'acks':>8}")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
