"""Server memory around big reads (P10, issue 13): does a full export stream, and does the
memory come back afterwards?

    python bench/memory.py            # 1M and 10M points: about 5 minutes on 2 cores
    python bench/memory.py --quick    # 1M and 3M points

Starts ``safeboard server`` on a free port of 127.0.0.1 with a temporary data directory
(SQLite), seeds one run per size straight through the metric service (10,000-point
batches, as a fast SDK would send them), signs in with the startup link and, per size:
records the idle memory, then the peak during one full export (``GET /points``, read as a
stream and thrown away) and 5 s and 20 s after it, then the same around 30 downsampled
reads (``GET /history``, 1,000 buckets). Memory is sampled every 5 ms: VmRSS (resident)
and RssAnon (the heap alone, without the database pages SQLite maps). Targets: an export's
peak <= 300 MiB resident for 10M points, and 20 s after any read back within 50 MiB of
idle. Stops the server at the end, also on errors. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.configs import Sampler, memory, server_pid, signed_in  # noqa: E402
from bench.seeding import server  # noqa: E402

from safeboard.cli.local import open_local  # noqa: E402
from safeboard.metrics.codec import Series  # noqa: E402
from safeboard.metrics.service import MetricService  # noqa: E402
from safeboard.projects.service import ProjectService  # noqa: E402
from safeboard.runs.access import run_project  # noqa: E402
from safeboard.runs.repository import activity as run_activity  # noqa: E402
from safeboard.runs.service import RunService  # noqa: E402
from safeboard.storage import open_database  # noqa: E402

BATCH = 10_000
READS = 30
PEAK_MIB = 300  # an export's peak resident memory, 10M points
BACK_MIB = 50  # 20 s after a read: within this of idle
AFTER = (5, 20)


def seed(data_dir: Path, sizes: list[int]) -> list[str]:
    """One run per size with that many points of ``loss``; their ids."""
    rng = np.random.default_rng(1)
    ids = []
    with open_local(data_dir) as local:
        admin = local.principal(local.users.list_all()[0].username)
        engine = open_database(local.settings.database_url)
        ProjectService(engine, activity=run_activity).create(admin, "memory", "big histories")
        runs, metrics = RunService(engine), MetricService(engine, runs=run_project)
        for size in sizes:
            run = runs.create(admin, "memory", name=f"points-{size}")
            started = time.perf_counter()
            for first in range(0, size, BATCH):
                steps = np.arange(first, min(first + BATCH, size), dtype=np.int64)
                values = np.exp(-steps / size) + rng.normal(0, 0.01, steps.size)
                series = Series(steps, 1.7e9 + steps * 0.01, values)
                metrics.ingest(admin, run.id, secrets.token_hex(8), {"loss": series})
            spent = time.perf_counter() - started
            print(f"  seeded {size:,} points in {spent:.0f} s", flush=True)
            ids.append(run.id)
        engine.dispose()
    return ids


def settle(pid: int, seconds: float, since: float) -> tuple[float, float]:
    """(VmRSS, RssAnon) ``seconds`` after ``since``."""
    time.sleep(max(0.0, since + seconds - time.monotonic()))
    rss, _, anon = memory(pid)
    return rss, anon


def measure(client: Any, pid: int, run_id: str, size: int) -> dict[str, Any]:
    time.sleep(2)
    idle_rss, _, idle_anon = memory(pid)
    row: dict[str, Any] = {"points": size, "idle": (idle_rss, idle_anon)}
    with Sampler(pid) as sampled:
        started = time.perf_counter()
        length = 0
        with client.stream("GET", f"/api/v1/runs/{run_id}/points?metric=loss") as answer:
            answer.raise_for_status()
            for piece in answer.iter_bytes():
                length += len(piece)
        row["export_s"] = time.perf_counter() - started
    done = time.monotonic()
    row["export_mib"] = length / 2**20
    row["export_peak"] = (sampled.rss, sampled.anon)
    for seconds in AFTER:
        row[f"export_{seconds}s"] = settle(pid, seconds, done)
    with Sampler(pid) as sampled:
        started = time.perf_counter()
        for _ in range(READS):
            client.get(f"/api/v1/runs/{run_id}/history?metric=loss&buckets=1000").raise_for_status()
        row["read_ms"] = (time.perf_counter() - started) * 1000 / READS
    done = time.monotonic()
    row["read_peak"] = (sampled.rss, sampled.anon)
    for seconds in AFTER:
        row[f"read_{seconds}s"] = settle(pid, seconds, done)
    return row


def mib(pair: tuple[float, float]) -> str:
    return f"{pair[0]:5.0f} / {pair[1]:4.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "server memory, MiB: resident / of which anonymous (heap, without SQLite's mapped pages)",
        f"{'':34}" + "".join(f"{r['points']:>16,}" for r in rows),
    ]

    def line(label: str, cell: Any) -> None:
        lines.append(f"{label:34}" + "".join(f"{cell(r):>16}" for r in rows))

    line("idle", lambda r: mib(r["idle"]))
    line("full export: time", lambda r: f"{r['export_s']:.2f} s")
    line("  body", lambda r: f"{r['export_mib']:.0f} MiB")
    line("  peak during", lambda r: mib(r["export_peak"]))
    for s in AFTER:
        line(f"  {s} s after", lambda r, s=s: mib(r[f"export_{s}s"]))
    line(f"{READS} downsampled reads: mean", lambda r: f"{r['read_ms']:.0f} ms")
    line("  peak during", lambda r: mib(r["read_peak"]))
    for s in AFTER:
        line(f"  {s} s after", lambda r, s=s: mib(r[f"read_{s}s"]))
    line(
        f"  {AFTER[-1]} s after export - idle",
        lambda r: f"{r[f'export_{AFTER[-1]}s'][0] - r['idle'][0]:+.0f}",
    )
    line(
        f"  {AFTER[-1]} s after reads - idle",
        lambda r: f"{r[f'read_{AFTER[-1]}s'][0] - r['idle'][0]:+.0f}",
    )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    last = AFTER[-1]
    for r in rows:
        back = max(r[f"export_{last}s"][0], r[f"read_{last}s"][0]) - r["idle"][0]
        verdict = "met" if back <= BACK_MIB else "NOT met"
        out.append(f"{r['points']:,} points: {last} s after the reads {back:+.0f} MiB from "
                   f"idle (target <= {BACK_MIB}): {verdict}")  # fmt: skip
    big = [r for r in rows if r["points"] >= 10_000_000]
    for r in big:
        peak = r["export_peak"][0]
        out.append(f"{r['points']:,}-point export peak {peak:.0f} MiB (target <= {PEAK_MIB}): "
                   f"{'met' if peak <= PEAK_MIB else 'NOT met'}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M and 3M points")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    parser.add_argument(
        "--server-src",
        type=Path,
        default=None,
        help="Run the server from this src/ directory (e.g. an older safeboard, exported with "
        "`git archive COMMIT src | tar -x -C DIR`); seeding still uses this checkout.",
    )
    args = parser.parse_args()
    sizes = args.sizes or ([1_000_000, 3_000_000] if args.quick else [1_000_000, 10_000_000])
    if args.server_src:
        os.environ["PYTHONPATH"] = str(args.server_src.resolve())
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with server(data_dir) as (url, link):
            print(f"seeding {', '.join(f'{s:,}' for s in sizes)} points ...", flush=True)
            ids = seed(data_dir, sizes)
            pid = server_pid(url)
            client = signed_in(url, link)
            client.get("/healthz")
            rows = []
            for run_id, size in zip(ids, sizes, strict=True):
                print(f"measuring {size:,} points ...", flush=True)
                rows.append(measure(client, pid, run_id, size))
    print()
    print(table(rows))
    print()
    print("\n".join(verdicts(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
