"""System metrics in an offline run (sdk/system.py through the sender into the spool):
samples numbered 0, 1, 2, ... with rising wall times, the training points exactly as
logged, and never a system point in ``log()``'s queue (they go straight into the
sender's batch: ``log()`` keeps its fast path)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import safeboard
from safeboard import wire
from safeboard.sdk.spool import RunSpool

STEPS = 3_000


def _spooled(root: Path, run_id: str) -> dict[str, tuple[list[int], list[float]]]:
    columns: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for _, batch in RunSpool(root, run_id).batches():
        packed = wire.split(batch.body)
        header = json.loads(packed.header)
        arrays = wire.columns(packed.data, [n for _, n in header["metrics"]])
        for (key, _), (steps, times, _values) in zip(header["metrics"], arrays, strict=True):
            columns[key][0].extend(int(s) for s in steps)
            columns[key][1].extend(float(t) for t in times)
    return columns


def test_an_offline_run_spools_numbered_samples_beside_its_metrics(tmp_path: Path) -> None:
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True,
                         system_metrics=True, system_metrics_interval=0.1)  # fmt: skip
    seen_in_queue = set()
    began = time.time()
    for step in range(STEPS):
        run.log({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
        if step % 100 == 0:
            seen_in_queue |= {
                key for item in list(run._queue) if isinstance(item, dict) for key in item
            }
            time.sleep(0.02)  # about 0.6 s in all: several samples
    run.finish()
    assert seen_in_queue <= {"loss", "acc"}
    columns = _spooled(tmp_path, run.id)
    assert columns["loss"][0] == list(range(STEPS))
    assert columns["acc"][0] == list(range(STEPS))
    steps, times = columns["system/cpu_percent"]
    assert len(steps) >= 2, sorted(columns)
    assert steps == list(range(len(steps)))
    assert np.all(np.diff(times) > 0)
    assert began < times[0] <= times[-1] <= time.time()
    for key in ("system/process/rss_mib", "system/memory/available_mib", "system/disk/free_gib"):
        assert columns[key][0] == steps, key
