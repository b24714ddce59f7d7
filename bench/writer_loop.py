"""Issue 17: what a TensorBoard writer costs the training loop, per step, side by side:

- safeboard's drop-in (``safeboard.tensorboard.SummaryWriter``) logging to a real safeboard
  server (HTTPS, API key, SQLite; started here);
- tensorboardX's ``SummaryWriter`` (event files in a temporary directory);
- torch's ``torch.utils.tensorboard.SummaryWriter``, when torch is importable.

Two loops each: ``scalars`` (10 ``add_scalar`` a step) and ``media`` (the same, plus
``add_histogram`` of 10,000 values and ``add_image`` of a 3x64x64 float image every 100
steps). Each step is timed with ``perf_counter_ns``; the table gives the median, p99 and
the slowest step (blocking shows there), and the loop's mean (wall time / steps). The
writer's ``close()`` (delivery, after the loop) is timed apart. Target: the drop-in's
scalar step >= 5x cheaper than the writer's (median), and no step blocked.

    python bench/writer_loop.py            # 20,000 steps a loop
    python bench/writer_loop.py --quick    # 2,000 steps: a smoke test, not figures
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from run import running, say, start_safeboard

SCALARS = 10
MEDIA_EVERY = 100
TARGET = 5.0


def loop(writer: Any, steps: int, media: bool) -> list[int]:
    """Per-step nanoseconds of a training loop's logging."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(10_000)
    image = rng.random((3, 64, 64), dtype=np.float32)
    names = [f"train/metric{i}" for i in range(SCALARS)]
    times = []
    clock = time.perf_counter_ns
    for step in range(steps):
        value = 1.0 / (step + 1)
        began = clock()
        for name in names:
            writer.add_scalar(name, value, step)
        if media and step % MEDIA_EVERY == 0:
            writer.add_histogram("weights", weights, step)
            writer.add_image("sample", image, step)
        times.append(clock() - began)
    return times


def measure(make: Callable[[str], Any], steps: int, media: bool, work: Path) -> dict[str, float]:
    writer = make(str(work / f"logs-{time.monotonic_ns()}"))
    began = time.perf_counter()
    times = loop(writer, steps, media)
    wall = time.perf_counter() - began
    closing = time.perf_counter()
    writer.close()
    times.sort()
    return {
        "median": times[len(times) // 2] / 1e3, "p99": times[int(len(times) * 0.99)] / 1e3,
        "max": times[-1] / 1e3, "mean": wall / steps * 1e6,
        "close": time.perf_counter() - closing,
    }  # fmt: skip


def writers() -> dict[str, Callable[[str], Any]]:
    from safeboard.tensorboard import SummaryWriter  # noqa: PLC0415  (after the environment)

    made: dict[str, Callable[[str], Any]] = {
        "safeboard": lambda d: SummaryWriter(d, project="bench"),
    }
    tbx = importlib.import_module("tensorboardX")
    made["tensorboardX"] = tbx.SummaryWriter
    with contextlib.suppress(ImportError):
        torch_tb = importlib.import_module("torch.utils.tensorboard")
        made["torch"] = torch_tb.SummaryWriter
    return made


@contextlib.contextmanager
def server_env(work: Path, command: str) -> Iterator[None]:
    with running(lambda: start_safeboard(work, shlex.split(command))) as (_, endpoint):
        os.environ.update({
            "SAFEBOARD_URL": endpoint.url, "SAFEBOARD_CA_CERT": str(endpoint.ca_file),
            "SAFEBOARD_API_KEY": (endpoint.auth_header or "").removeprefix("Bearer "),
            "SAFEBOARD_QUIET": "1",
        })  # fmt: skip
        yield


def table(results: dict[tuple[str, str], dict[str, float]], names: list[str]) -> str:
    lines = [
        "| loop | figure | " + " | ".join(names) + " | writer / drop-in |",
        "| --- | --- | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for kind in ("scalars", "media"):
        for figure in ("median", "p99", "max", "mean"):
            row = [results[kind, name][figure] for name in names]
            others = [results[kind, n][figure] for n in names if n != "safeboard"]
            ratio = " / ".join(f"{o / row[0]:.1f}x" for o in others)
            cells = " | ".join(f"{v:,.1f} us" for v in row)
            lines.append(f"| {kind} | {figure} | {cells} | {ratio} |")
        closes = " | ".join(f"{results[kind, n]['close']:.2f} s" for n in names)
        lines.append(f"| {kind} | close() | {closes} | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 steps a loop")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--safeboard", default=f"{sys.executable} -m safeboard")
    args = parser.parse_args()
    steps = 2_000 if args.quick else args.steps
    with tempfile.TemporaryDirectory(prefix="writer-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o700)
        os.environ["SAFEBOARD_SPOOL_DIR"] = str(work / "spool")
        with server_env(work, args.safeboard):
            made = writers()
            results = {}
            for kind in ("scalars", "media"):
                for name, make in made.items():
                    results[kind, name] = measure(make, steps, kind == "media", work)
                    say(f"{kind} {name}: median {results[kind, name]['median']:.1f} us")
    names = list(made)
    print(f"\n{steps:,} steps a loop, {SCALARS} scalars a step; media: a histogram of "
          f"10,000 values and a 3x64x64 image every {MEDIA_EVERY} steps\n")  # fmt: skip
    print(table(results, names))
    ratio = results["scalars", "tensorboardX"]["median"] / results["scalars", "safeboard"]["median"]
    met = "met" if ratio >= TARGET else "NOT met"
    print(f"\ntarget: drop-in >= {TARGET:.0f}x cheaper than tensorboardX for scalars: "
          f"{ratio:.1f}x ({met})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
