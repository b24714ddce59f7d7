"""Runs under MLflow's own interpreter (its virtualenv): the cost of ``mlflow.log_metric``
against a tracking server, synchronous (the default: one HTTP request per call) and with
``synchronous=False`` (MLflow's background queue). Prints one JSON object.

    /path/to/mlflow-venv/bin/python bench/mlflow_probe.py --url http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

import mlflow


def _timed(calls: int, seconds: float, *, synchronous: bool, step_base: int) -> dict[str, Any]:
    clock = time.perf_counter_ns
    durations: list[int] = []
    began = time.perf_counter()
    deadline = began + seconds
    for i in range(calls):
        started = clock()
        mlflow.log_metric("loss", 1.0 / (i + 1), step=step_base + i, synchronous=synchronous)
        durations.append(clock() - started)
        if time.perf_counter() >= deadline:
            break
    durations.sort()
    return {
        "calls": len(durations),
        "seconds": time.perf_counter() - began,
        "median_ns": statistics.median(durations),
        "p99_ns": float(durations[min(len(durations) - 1, int(len(durations) * 0.99))]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sync-calls", type=int, default=300)
    parser.add_argument("--async-calls", type=int, default=2_000)
    parser.add_argument("--flush-timeout", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    mlflow.set_tracking_uri(args.url)
    mlflow.set_experiment("bench-log-metric")
    result: dict[str, Any] = {}
    with mlflow.start_run():
        mlflow.log_metric("loss", 0.0, step=0)  # first call: connection, lazy imports
        result["sync"] = _timed(args.sync_calls, args.seconds, synchronous=True, step_base=1)
        base = 1 + args.sync_calls
        result["async"] = _timed(args.async_calls, args.seconds, synchronous=False, step_base=base)
        # MLflow's queue delivers slowly; wait for it a bounded time only.
        began = time.perf_counter()
        flusher = threading.Thread(target=mlflow.flush_async_logging, daemon=True)
        flusher.start()
        flusher.join(args.flush_timeout)
        flushed = not flusher.is_alive()
        result["async"]["flush_s"] = time.perf_counter() - began if flushed else None
        if not flushed:
            print(json.dumps(result), flush=True)
            sys.stderr.flush()
            os._exit(0)  # the queue is still sending: leave without waiting at exit
    print(json.dumps(result))


if __name__ == "__main__":
    main()
