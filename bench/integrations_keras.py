"""Issue 17: what the Keras callback (safeboard.integrations.keras) costs a training loop,
per step, side by side: ``model.fit`` of a small MLP on JAX's CPU backend

- without the callback (the baseline);
- with ``SafeboardCallback`` logging each epoch's logs (the default);
- with ``SafeboardCallback(log_every_n_steps=1)``: every batch's logs as well;

each logging to a real safeboard server (HTTPS, API key, SQLite; started here). The time
per step is the time inside the epochs (from Keras's first epoch begin to its last epoch
end, measured by a callback that keeps Keras's asynchronous batch dispatch) divided by the
steps, the median of several fits in turn after a warm-up fit that compiles the step; the
run's start and end (``safeboard.init`` at the training's begin, ``finish()`` with its
delivery at its end) are timed apart. A tiny model makes the overhead show: a real step
costs far more than these.

    python bench/integrations_keras.py            # 5 fits each, 3 epochs of 400 steps
    python bench/integrations_keras.py --quick    # 2 fits each, 2 epochs of 50 steps: a smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
from run import say
from writer_loop import server_env

BATCH = 32


def _timer() -> Any:
    import keras  # noqa: PLC0415  (after KERAS_BACKEND)

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
        """Time inside the epochs; batch hooks left at Keras's defaults (async dispatch)."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[float] = []  # seconds inside each epoch
            self._began = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:  # noqa: ARG002
            self._began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:  # noqa: ARG002
            self.epochs.append(time.perf_counter() - self._began)

    return EpochTimer()


def _model() -> Any:
    import keras  # noqa: PLC0415

    model = keras.Sequential([
        keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def fit(
    model: Any, data: tuple[np.ndarray, np.ndarray], epochs: int, how: str
) -> tuple[list[float], float]:
    """(us per step in each epoch, seconds of the fit outside its epochs)."""
    from safeboard.integrations.keras import SafeboardCallback  # noqa: PLC0415

    timer = _timer()
    callbacks: list[Any] = []
    if how != "none":
        every = 1 if how == "batches" else None
        callbacks.append(SafeboardCallback("bench-keras", log_every_n_steps=every, quiet=True))
    began = time.perf_counter()
    model.fit(*data, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[*callbacks, timer])
    wall = time.perf_counter() - began
    steps = len(data[0]) // BATCH
    return [e / steps * 1e6 for e in timer.epochs], wall - sum(timer.epochs)


def hook_costs(calls: int) -> dict[str, list[int]]:
    """Nanoseconds of each call of the callback's batch hook, called directly on a live
    run with a Keras-like logs dict: the work it adds to a step, free of the fit's noise
    (a loaded machine moves whole fits by more than the callback costs)."""
    from safeboard.integrations.keras import SafeboardCallback  # noqa: PLC0415

    costs: dict[str, list[int]] = {}
    clock = time.perf_counter_ns
    for label, every in (
        ("batch end, logged (every=1)", 1),
        ("batch end, skipped (every=100)", 100),
    ):
        callback = SafeboardCallback("bench-keras", log_every_n_steps=every, quiet=True)
        callback.set_params({"epochs": 1, "steps": calls, "verbose": 0})
        callback.set_model(_model())
        callback.on_train_begin()
        callback.on_epoch_begin(0)
        times = []
        for batch in range(calls):
            logs = {"loss": 1.0 / (batch + 1), "mae": 0.5}
            began = clock()
            callback.on_train_batch_end(batch, logs)
            times.append(clock() - began)
        callback.on_epoch_end(0, {"loss": 0.1, "mae": 0.5})
        callback.on_train_end()
        costs[label] = sorted(times)
    return costs


CONFIGS = {
    "none": "no callback",
    "epochs": "SafeboardCallback",
    "batches": "... log_every_n_steps=1",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 fits each, 2 epochs of 50 steps")
    parser.add_argument("--fits", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="steps an epoch")
    parser.add_argument("--safeboard", default=f"{sys.executable} -m safeboard")
    args = parser.parse_args()
    fits, epochs, steps = (2, 2, 50) if args.quick else (args.fits, args.epochs, args.steps)
    rng = np.random.default_rng(0)
    data = (rng.random((steps * BATCH, 32), dtype=np.float32),
            rng.random((steps * BATCH, 1), dtype=np.float32))  # fmt: skip
    per_step: dict[str, list[float]] = {how: [] for how in CONFIGS}
    outside: dict[str, list[float]] = {how: [] for how in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="keras-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o700)
        os.environ["SAFEBOARD_SPOOL_DIR"] = str(work / "spool")
        with server_env(work, args.safeboard):
            model = _model()
            fit(model, data, 1, "none")  # compiles the train step
            for round_ in range(fits):
                order = list(CONFIGS)[round_ % 3 :] + list(CONFIGS)[: round_ % 3]
                for how in order:  # in turn, each first in some rounds: no order bias
                    epochs_us, rest = fit(model, data, epochs, how)
                    per_step[how] += epochs_us
                    outside[how].append(rest)
                say(f"fit {round_ + 1}/{fits} done")
            hooks = hook_costs(2_000 if args.quick else 20_000)
    print(f"\n{fits} fits each of {epochs} epochs x {steps} steps (batch {BATCH}, MLP 32-64-64-1, "
          f"JAX on CPU); medians over the epochs and the fits\n")  # fmt: skip
    base = statistics.median(per_step["none"])
    print("| fit | per step | overhead per step | overhead | run start + end per fit |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for how, label in CONFIGS.items():
        step = statistics.median(per_step[how])
        over = step - base
        print(f"| {label} | {step:,.1f} us | {over:+,.1f} us | {over / base:+.1%} | "
              f"{statistics.median(outside[how]) * 1e3:,.0f} ms |")  # fmt: skip
    print(f"\nThe callback's batch hook called directly, {len(next(iter(hooks.values()))):,} "
          "calls on a live run (2 values a call)\n")  # fmt: skip
    print("| hook | median | p99 | max |")
    print("| --- | ---: | ---: | ---: |")
    for label, times in hooks.items():
        median, p99 = times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3
        print(f"| {label} | {median:.1f} us | {p99:.1f} us | {times[-1] / 1e3:.1f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
