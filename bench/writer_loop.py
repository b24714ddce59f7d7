"""Issue 17: what each logging path costs the training loop, per step, side by side:

- the SDK's ``run.log`` (10 scalars in one call; the media loop adds ``run.log_histogram``
  and ``run.log_image``), logging to a real safeboard server (HTTPS, API key, SQLite;
  started here);
- safeboard's drop-in (``safeboard.tensorboard.SummaryWriter``) to the same server;
- torch's ``torch.utils.tensorboard.SummaryWriter`` when torch is importable (event files
  in a temporary directory), and tensorboardX's, whose API torch's copies (the reference
  when torch is missing).

Two loops each: ``scalars`` (10 scalars a step) and ``media`` (the same, plus a histogram
of 10,000 values and a 3x64x64 float image every 100 steps). Each step is timed with
``perf_counter_ns``; the table gives the median, p99 and the slowest step (blocking shows
there), the loop's mean (wall time / steps), the writer's ``close()`` (delivery, after
the loop) and the ratio of the reference writer's figure to each path's. Targets: the
drop-in's scalar step >= 5x cheaper than torch's writer (median), and no path blocks the
loop (no step of a safeboard path over ``BLOCKED_MS``).

    python bench/writer_loop.py            # 20,000 steps a loop
    python bench/writer_loop.py --quick    # 2,000 steps: a smoke test, not figures
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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
BLOCKED_MS = 50.0  # a step slower than this, on a safeboard path, blocked the loop
NAMES = [f"train/metric{i}" for i in range(SCALARS)]


class Sdk:
    """The SDK's own calls, shaped as a writer for ``loop``: one ``run.log`` of the 10
    scalars a step (the drop-in makes 10 ``add_scalar`` calls)."""

    def __init__(self, logdir: str) -> None:
        import safeboard  # noqa: PLC0415  (after the environment)

        self.run = safeboard.init(project="bench", name=Path(logdir).name)

    def scalars(self, value: float, step: int) -> None:
        self.run.log(dict.fromkeys(NAMES, value), step=step)

    def media(self, weights: Any, image: Any, step: int) -> None:
        self.run.log_histogram("weights", weights, step=step)
        self.run.log_image("sample", image.transpose(1, 2, 0), step)  # HWC, as numpy has it

    def close(self) -> None:
        self.run.finish()


class Writer:
    """A ``SummaryWriter`` (the drop-in, torch's, tensorboardX's)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def scalars(self, value: float, step: int) -> None:
        for name in NAMES:
            self.writer.add_scalar(name, value, step)

    def media(self, weights: Any, image: Any, step: int) -> None:
        self.writer.add_histogram("weights", weights, step)
        self.writer.add_image("sample", image, step)

    def close(self) -> None:
        self.writer.close()


def loop(path: Sdk | Writer, steps: int, media: bool) -> list[int]:
    """Per-step nanoseconds of a training loop's logging."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(10_000)
    image = rng.random((3, 64, 64), dtype=np.float32)
    times = []
    clock = time.perf_counter_ns
    # Each path starts from the same collector state: the first full collection after the
    # imports (torch's and the rest: ~100 ms with torch loaded) would otherwise fall into
    # whichever path runs when it comes due, whatever that path allocates.
    gc.collect()
    for step in range(steps):
        value = 1.0 / (step + 1)
        began = clock()
        path.scalars(value, step)
        if media and step % MEDIA_EVERY == 0:
            path.media(weights, image, step)
        times.append(clock() - began)
    return times


def measure(
    make: Callable[[str], Sdk | Writer], steps: int, media: bool, work: Path
) -> dict[str, float]:
    path = make(str(work / f"logs-{time.monotonic_ns()}"))
    began = time.perf_counter()
    times = loop(path, steps, media)
    wall = time.perf_counter() - began
    closing = time.perf_counter()
    path.close()
    slowest = max(range(steps), key=times.__getitem__)
    times.sort()
    return {
        "slowest_step": slowest,
        "median": times[len(times) // 2] / 1e3, "p99": times[int(len(times) * 0.99)] / 1e3,
        "max": times[-1] / 1e3, "mean": wall / steps * 1e6,
        "close": time.perf_counter() - closing,
    }  # fmt: skip


def paths() -> tuple[dict[str, Callable[[str], Sdk | Writer]], str]:
    """Each path's maker, and the reference writer's name (torch's, else tensorboardX's)."""
    from safeboard.tensorboard import SummaryWriter  # noqa: PLC0415  (after the environment)

    made: dict[str, Callable[[str], Sdk | Writer]] = {
        "sdk run.log": Sdk,
        "drop-in": lambda d: Writer(SummaryWriter(d, project="bench")),
    }
    reference = "tensorboardX"
    with contextlib.suppress(ImportError):
        torch_tb = importlib.import_module("torch.utils.tensorboard")
        made["torch"] = lambda d: Writer(torch_tb.SummaryWriter(d))
        reference = "torch"
    tbx = importlib.import_module("tensorboardX")
    made["tensorboardX"] = lambda d: Writer(tbx.SummaryWriter(d))
    return made, reference


@contextlib.contextmanager
def server_env(work: Path, command: str) -> Iterator[None]:
    with running(lambda: start_safeboard(work, shlex.split(command))) as (_, endpoint):
        os.environ.update({
            "SAFEBOARD_URL": endpoint.url, "SAFEBOARD_CA_CERT": str(endpoint.ca_file),
            "SAFEBOARD_API_KEY": (endpoint.auth_header or "").removeprefix("Bearer "),
            "SAFEBOARD_QUIET": "1",
        })  # fmt: skip
        yield


Results = dict[tuple[str, str], dict[str, float]]


def table(results: Results, names: list[str], reference: str) -> str:
    """A row per loop and path: its figures, and the reference writer's over its own."""
    figures = ("median", "p99", "max", "mean")
    lines = [
        "| loop | path | " + " | ".join(figures) + f" | close() | {reference} / path (median) |",
        "| --- | --- | " + " | ".join("---:" for _ in figures) + " | ---: | ---: |",
    ]
    for kind in ("scalars", "media"):
        ref = results[kind, reference]["median"]
        for name in names:
            got = results[kind, name]
            cells = " | ".join(f"{got[f]:,.1f} us" for f in figures)
            ratio = "" if name == reference else f"{ref / got['median']:.1f}x"
            lines.append(f"| {kind} | {name} | {cells} | {got['close']:.2f} s | {ratio} |")
    return "\n".join(lines)


def verdicts(results: Results, reference: str) -> list[str]:
    ratio = results["scalars", reference]["median"] / results["scalars", "drop-in"]["median"]
    met = "met" if ratio >= TARGET else "NOT met"
    first = f"drop-in >= {TARGET:.0f}x cheaper than {reference}'s writer for scalars (median)"
    lines = [f"target: {first}: {ratio:.1f}x ({met})"]
    if reference != "torch":
        lines.append("  (torch is not importable here: tensorboardX's writer is the reference)")
    worst = {
        f"{name} {kind} at step {results[kind, name]['slowest_step']:.0f}": results[kind, name][
            "max"
        ]
        / 1e3
        for (kind, name) in results
        if name in ("sdk run.log", "drop-in")
    }
    blocked = [f"{k} ({ms:,.1f} ms)" for k, ms in worst.items() if ms > BLOCKED_MS]
    slowest = max(worst, key=worst.__getitem__)
    lines.append(
        f"target: no safeboard path blocks the loop (no step over {BLOCKED_MS:.0f} ms): "
        + (f"NOT met: {', '.join(blocked)}" if blocked
           else f"met (worst step: {slowest}, {worst[slowest]:,.1f} ms)")
    )  # fmt: skip
    return lines


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
            made, reference = paths()
            results: Results = {}
            for kind in ("scalars", "media"):
                for name, make in made.items():
                    results[kind, name] = measure(make, steps, kind == "media", work)
                    say(f"{kind} {name}: median {results[kind, name]['median']:.1f} us")
    print(f"\n{steps:,} steps a loop, {SCALARS} scalars a step; media: a histogram of "
          f"10,000 values and a 3x64x64 image every {MEDIA_EVERY} steps; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")  # fmt: skip
    print(table(results, list(made), reference))
    print()
    print("\n".join(verdicts(results, reference)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
