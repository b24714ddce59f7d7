"""What the SDK's system metrics cost a training loop (issue 17): the same loop with them
off, on at the default period (10 s) and on every second (ten times the default, to make
any cost visible), side by side; and what the sampler thread itself uses.

    python bench/system_metrics.py            # 3 rounds of 40 s per mode
    python bench/system_metrics.py --quick    # 3 rounds of 12 s: a smoke test, not figures

Each mode runs in a fresh interpreter (as a training script would), modes interleaved
round by round, each round starting with the next mode, so that a busy machine weighs on
all of them alike. The loop does a fixed step of work (a 128x128 matrix product, BLAS on
one thread) and logs 10 scalars with ``run.log()``, each step timed alone; the run is
offline (spooled), so no server's noise enters. The sampler's CPU time is what its
thread's clock (``time.thread_time``) counted in its samples; one ``Probe.sample()`` is
also timed alone in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

MODES = {"off": None, "on (10 s)": 10.0, "on (1 s)": 1.0}
KEYS = 10


def child(interval: float | None, seconds: float) -> dict[str, Any]:
    """The training loop, in this (fresh) interpreter."""
    import numpy as np  # noqa: PLC0415

    import safeboard  # noqa: PLC0415

    spool = tempfile.mkdtemp(prefix="sysbench-")
    run = safeboard.init(
        "bench", mode="offline", spool_dir=spool, quiet=True,
        system_metrics=interval is not None, system_metrics_interval=interval,
    )  # fmt: skip
    a = np.random.default_rng(0).random((128, 128))
    took = array("q")
    step = 0
    start = time.perf_counter()
    end = start + seconds
    now = time.perf_counter_ns
    while time.perf_counter() < end:
        t0 = now()
        b = a @ a
        run.log({f"m{k}": float(b[k, k]) for k in range(KEYS)}, step=step)
        took.append(now() - t0)
        step += 1
    loop = time.perf_counter() - start
    sampler = run._system
    cpu, samples = (sampler.cpu_seconds, sampler.samples) if sampler is not None else (0.0, 0)
    run.finish(timeout=60)
    ordered = sorted(took)
    return {
        "steps": step, "loop_s": loop, "steps_per_s": step / loop,
        "median_us": ordered[len(ordered) // 2] / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
        "max_ms": ordered[-1] / 1e6,
        "samples": samples, "sampler_cpu_s": cpu,
    }  # fmt: skip


def sample_cost(repeat: int) -> dict[str, float]:
    """One Probe.sample() timed alone (this machine's psutil; NVML if installed)."""
    from safeboard.sdk.probes import Gpus, Probe  # noqa: PLC0415

    gpus = Gpus.open()
    probe = Probe(Path.cwd(), gpus)
    probe.sample(time.monotonic())
    took = []
    cpu0 = time.thread_time()
    for _ in range(repeat):
        t0 = time.perf_counter()
        probe.sample(time.monotonic())
        took.append(time.perf_counter() - t0)
    cpu = (time.thread_time() - cpu0) / repeat
    if gpus is not None:
        gpus.close()
    return {"median_ms": statistics.median(took) * 1e3, "max_ms": max(took) * 1e3,
            "cpu_ms": cpu * 1e3, "gpus": float(len(gpus) if gpus else 0)}  # fmt: skip


def _run_child(mode: str, seconds: float) -> dict[str, Any]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("SAFEBOARD_SYSTEM_METRICS", None)
    env.pop("SAFEBOARD_SYSTEM_METRICS_INTERVAL", None)
    interval = MODES[mode]
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(interval), str(seconds)],
        env=env, capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 12 s per mode")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="loop length per round")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        interval = json.loads(args.child[0])
        print(json.dumps(child(interval, float(args.child[1]))))
        return
    rounds = args.rounds or 3
    seconds = args.seconds or (12.0 if args.quick else 40.0)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    order = list(MODES)
    for number in range(rounds):
        for mode in order[number % 3 :] + order[: number % 3]:  # each mode first in turn
            results[mode].append(_run_child(mode, seconds))
            print(f"round {number + 1}/{rounds} {mode}: done", file=sys.stderr)
    _table(results, rounds, seconds)
    cost = sample_cost(50 if args.quick else 200)
    print(
        f"\nOne Probe.sample() in this process ({threading.active_count()} thread, "
        f"{cost['gpus']:.0f} GPUs): median {cost['median_ms']:.2f} ms, max "
        f"{cost['max_ms']:.2f} ms, CPU {cost['cpu_ms']:.2f} ms"
    )


def _table(results: dict[str, list[dict[str, Any]]], rounds: int, seconds: float) -> None:
    def med(mode: str, field: str) -> float:
        return statistics.median(r[field] for r in results[mode])

    print(f"\nTraining loop, {rounds} rounds x {seconds:.0f} s per mode (median of rounds)")
    head = f"{'':28}" + "".join(f"{mode:>14}" for mode in MODES)
    print(head)
    rows = [
        ("steps/s", "steps_per_s", "{:>14.0f}"),
        ("step median (us)", "median_us", "{:>14.1f}"),
        ("step p99 (us)", "p99_us", "{:>14.1f}"),
        ("slowest step (ms)", "max_ms", "{:>14.2f}"),
        ("samples", "samples", "{:>14.0f}"),
        ("sampler CPU (s)", "sampler_cpu_s", "{:>14.3f}"),
    ]
    for label, field, form in rows:
        print(f"{label:28}" + "".join(form.format(med(m, field)) for m in MODES))
    spread = [
        (max(r["steps_per_s"] for r in results[m]) - min(r["steps_per_s"] for r in results[m]))
        / med(m, "steps_per_s") * 100
        for m in MODES
    ]  # fmt: skip
    print(f"{'steps/s spread (%, noise)':28}" + "".join(f"{s:>14.1f}" for s in spread))
    base = med("off", "steps_per_s")
    print(f"{'steps/s vs off (%)':28}" + "".join(
        f"{(med(m, 'steps_per_s') / base - 1) * 100:>+14.1f}" for m in MODES
    ))  # fmt: skip
    for mode in MODES:
        cpu, samples = med(mode, "sampler_cpu_s"), med(mode, "samples")
        if samples:
            print(
                f"sampler, {mode}: {cpu / samples * 1e3:.2f} ms CPU a sample, "
                f"{cpu / seconds * 100:.3f} % of one core"
            )


if __name__ == "__main__":
    main()
