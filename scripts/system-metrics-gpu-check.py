#!/usr/bin/env python3
"""The SDK's GPU metrics on a real GPU machine (issue 17; CI has no GPU).

    pip install -e ".[gpu]"            # nvidia-ml-py; PyTorch too if you want a busy GPU
    PYTHONPATH=src python3 scripts/system-metrics-gpu-check.py [--seconds 8]

An offline run samples every 0.5 s while (with PyTorch) a matrix product keeps GPU 0
busy; the spooled batches are read back and each GPU's keys checked: present, in range,
utilisation above 0 while busy (only with PyTorch). Also times one ``Probe.sample()``
with the GPUs. Exits 1 on any failed check, printing what it saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import safeboard
from safeboard import wire
from safeboard.sdk.probes import Gpus, Probe
from safeboard.sdk.spool import RunSpool

GPU_KEYS = ("utilization_percent", "memory_used_mib", "memory_total_mib", "temperature_c",
            "power_w")  # fmt: skip


def busy(stop: threading.Event) -> str:
    """Keep GPU 0 busy until ``stop`` (PyTorch), or say why not."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return "no PyTorch: the GPU stays idle (utilisation not checked above 0)"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"

    def work() -> None:
        a = torch.randn(4096, 4096, device="cuda")
        while not stop.is_set():
            a = (a @ a).clamp_(-1, 1)
            torch.cuda.synchronize()

    threading.Thread(target=work, daemon=True).start()
    return ""


def spooled(spool_dir: Path, run_id: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = defaultdict(list)
    for _, batch in RunSpool(spool_dir, run_id).batches():
        packed = wire.split(batch.body)
        header = json.loads(packed.header)
        arrays = wire.columns(packed.data, [n for _, n in header["metrics"]])
        for (key, _), (_, _, vals) in zip(header["metrics"], arrays, strict=True):
            values[key].extend(float(v) for v in vals)
    return values


def check_gpu(index: int, values: dict[str, list[float]]) -> list[str]:
    got = {name: values.get(f"system/gpu{index}/{name}", []) for name in GPU_KEYS}
    print(f"gpu{index}: { ({k: (min(v), max(v)) if v else None for k, v in got.items()}) }")
    failures = [
        f"gpu{index}/{name}: no sample"
        for name in ("utilization_percent", "memory_used_mib", "memory_total_mib")
        if not got[name]
    ]
    used, total = got["memory_used_mib"], got["memory_total_mib"]
    if used and total and not 0 < max(used) <= max(total):
        failures.append(f"gpu{index}: memory used not within (0, total]")
    if got["temperature_c"] and not 5 <= max(got["temperature_c"]) <= 120:
        failures.append(f"gpu{index}: temperature {max(got['temperature_c'])} C")
    if got["power_w"] and not 0 < max(got["power_w"]) < 2000:
        failures.append(f"gpu{index}: power {max(got['power_w'])} W")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    gpus = Gpus.open()
    if gpus is None:
        print("FAIL: NVML found no GPU (is nvidia-ml-py installed, the driver loaded?)")
        return 1
    count = len(gpus)
    probe = Probe(Path.cwd(), gpus)
    probe.sample(time.monotonic())
    took = []
    for _ in range(20):
        t0 = time.perf_counter()
        probe.sample(time.monotonic())
        took.append(time.perf_counter() - t0)
    gpus.close()
    print(f"{count} GPU(s); one Probe.sample(): median {sorted(took)[10] * 1e3:.2f} ms")

    stop = threading.Event()
    note = busy(stop)
    if note:
        print(note)
    spool = Path(tempfile.mkdtemp(prefix="sb-gpu-check-"))
    run = safeboard.init("gpu-check", mode="offline", spool_dir=spool, quiet=True,
                         system_metrics_interval=0.5)  # fmt: skip
    for step in range(int(args.seconds * 20)):
        run.log({"step_time": 0.05}, step=step)
        time.sleep(0.05)
    stop.set()
    run.finish(timeout=30)
    values = spooled(spool, run.id)
    failures = [f for index in range(count) for f in check_gpu(index, values)]
    if not note and not max(values.get("system/gpu0/utilization_percent", [0.0])) > 0:
        failures.append("gpu0: utilisation stayed 0 while PyTorch kept it busy")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
