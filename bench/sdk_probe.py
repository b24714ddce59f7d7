"""Runs in its own process (a fresh interpreter, as a training script would be): the cost of
``run.log()`` and the SDK's end-to-end ingest rate. Prints one JSON object.

The server comes from SAFEBOARD_URL, SAFEBOARD_API_KEY and SAFEBOARD_CA_CERT (the key
never appears on a command line); run.py sets them, and private spool and config
directories.

    python bench/sdk_probe.py cost --calls 200000
    python bench/sdk_probe.py ingest --points 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import ssl
import statistics
import time
from typing import Any

import httpx

import safeboard


def _stored_points(run_id: str) -> int:
    """What the server holds for the run (its per-key summaries)."""
    context = ssl.create_default_context(cafile=os.environ["SAFEBOARD_CA_CERT"])
    headers = {"Authorization": f"Bearer {os.environ['SAFEBOARD_API_KEY']}"}
    with httpx.Client(
        base_url=os.environ["SAFEBOARD_URL"], verify=context, headers=headers, trust_env=False
    ) as client:
        run = client.get(f"/api/v1/runs/{run_id}")
        run.raise_for_status()
        return sum(int(m["count"]) for m in run.json()["metrics"])


def _percentile(sorted_values: list[int], fraction: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))])


def cost(calls: int) -> dict[str, Any]:
    """``run.log({"loss": x}, step=i)`` timed one call at a time (perf_counter_ns around each
    call; the timer's own cost is measured and reported), then a plain loop for the mean."""
    run = safeboard.init(project="bench-sdk", name="log-cost")
    values = [1.0 / (i + 1) for i in range(calls)]
    clock = time.perf_counter_ns
    overhead = []
    for _ in range(10_000):
        a = clock()
        overhead.append(clock() - a)
    durations = [0] * calls
    log = run.log
    for i in range(calls):
        value = values[i]
        started = clock()
        log({"loss": value}, step=i)
        durations[i] = clock() - started
    began = time.perf_counter()
    for i in range(calls):
        log({"loss": values[i]}, step=calls + i)
    plain_mean_ns = (time.perf_counter() - began) / calls * 1e9
    finish_began = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - finish_began
    durations.sort()
    return {
        "calls": calls,
        "median_ns": statistics.median(durations),
        "p99_ns": _percentile(durations, 0.99),
        "p999_ns": _percentile(durations, 0.999),
        "max_ns": durations[-1],
        "timer_overhead_ns": statistics.median(overhead),
        "plain_loop_mean_ns": plain_mean_ns,
        "finish_s": finish_s,
        "stored": _stored_points(run.id),
        "expected": 2 * calls,
    }


def ingest(points: int) -> dict[str, Any]:
    """Log ``points`` points as fast as the loop goes, then ``finish()``: the rate is what
    reached the server (acknowledged, committed) per second of wall time."""
    run = safeboard.init(project="bench-sdk", name="ingest")
    values = [1.0 / (i + 1) for i in range(points)]
    gc.collect()
    began = time.perf_counter()
    log = run.log
    for i in range(points):
        log({"loss": values[i]}, step=i)
    logged = time.perf_counter() - began
    run.finish(timeout=600)
    elapsed = time.perf_counter() - began
    return {
        "points": points,
        "log_loop_s": logged,
        "seconds": elapsed,
        "points_per_second": points / elapsed,
        "stored": _stored_points(run.id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("cost").add_argument("--calls", type=int, default=200_000)
    sub.add_parser("ingest").add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    result = cost(args.calls) if args.what == "cost" else ingest(args.points)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
