"""Issue 17: what each PyTorch integration costs a training loop, per step, side by side
(docs/integrations.md):

- Lightning: a Trainer fitting a 2-layer MLP (``self.log`` of 10 metrics a step,
  ``log_every_n_steps=1``), with no logger and with ``SafeboardLogger``;
- Hugging Face: a Trainer fitting a tiny BERT built from a config (``logging_steps=1``),
  with ``report_to="none"`` and with ``SafeboardCallback``;
- Accelerate: a plain loop with ``accelerator.log`` of 10 metrics a step, with no tracker
  and with ``SafeboardTracker``;
- writers: 10 ``add_scalar`` a step, torch's ``torch.utils.tensorboard.SummaryWriter``
  (event files) against safeboard's drop-in (``safeboard.tensorboard.SummaryWriter``).

The integrations log to a real safeboard server (HTTPS, API key, SQLite; started here).
A step is the time between two step starts as the framework's own callback sees them (the
whole step: forward, backward, optimizer, logging); for the writers, the ``add_scalar``
calls alone. Without and with alternate round by round, so that a busy machine weighs on
both alike; the table gives the median and the mean over all rounds' steps, and what the
integration adds (with - without). Target: no path blocks the loop, and the drop-in's
scalars >= 5x cheaper than torch's writer (median).

    python bench/integrations_torch.py            # 3 rounds of 300 steps a path
    python bench/integrations_torch.py --quick    # 1 round of 40 steps: a smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the BERT is built from a config
os.environ.setdefault("SAFEBOARD_SYSTEM_METRICS", "0")  # the integration alone

import torch
from run import say
from torch import nn
from writer_loop import SCALARS, TARGET, Writer, loop, server_env

torch.set_num_threads(1)  # steady steps on a shared machine
Steps = list[float]  # microseconds


def lightning_steps(steps: int, work: Path, with_logger: bool) -> Steps:
    import lightning.pytorch as pl  # noqa: PLC0415

    from safeboard.integrations.lightning import SafeboardLogger  # noqa: PLC0415

    class Mlp(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            del index
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            for i in range(SCALARS):
                self.log(f"train/metric{i}", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    clock = Clock()
    logger: Any = SafeboardLogger(project="bench-lightning") if with_logger else False
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=logger, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        default_root_dir=str(work), callbacks=[clock.lightning(pl.Callback)],
    )  # fmt: skip
    x = torch.randn(steps * 8, 16)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8
    )
    trainer.fit(Mlp(), data)
    if with_logger:
        logger.finish()
    return clock.steps()


def transformers_steps(steps: int, work: Path, with_callback: bool) -> Steps:
    import transformers as hf  # noqa: PLC0415

    from safeboard.integrations.transformers import SafeboardCallback  # noqa: PLC0415

    torch.manual_seed(0)
    model = hf.BertForSequenceClassification(hf.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
    ))  # fmt: skip
    ids = torch.randint(1, 64, (steps * 4, 8))
    data = [{"input_ids": row, "labels": int(row[0] % 2)} for row in ids]
    clock = Clock()
    callbacks = [clock.transformers(hf.TrainerCallback)]
    if with_callback:
        callbacks.append(SafeboardCallback(project="bench-transformers"))
    args = hf.TrainingArguments(
        output_dir=str(work / "hf"), max_steps=steps, per_device_train_batch_size=4,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = hf.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
    trainer.remove_callback(hf.trainer_callback.PrinterCallback)  # a print a step: both
    trainer.train()
    return clock.steps()


def accelerate_steps(steps: int, work: Path, with_tracker: bool) -> Steps:
    from accelerate import Accelerator  # noqa: PLC0415

    from safeboard.integrations.accelerate import SafeboardTracker  # noqa: PLC0415

    del work
    trackers = [SafeboardTracker("bench-accelerate")] if with_tracker else None
    accelerator = Accelerator(cpu=True, log_with=trackers)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers("bench-accelerate", config={"lr": 0.01})
    names = [f"train/metric{i}" for i in range(SCALARS)]
    times: Steps = []
    for step in range(steps):
        began = time.perf_counter_ns()
        x = torch.randn(8, 16)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        value = loss.item()
        accelerator.log(dict.fromkeys(names, value), step=step)
        times.append((time.perf_counter_ns() - began) / 1e3)
    accelerator.end_training()
    return times


def writer_steps(steps: int, work: Path, safeboard: bool) -> Steps:
    if safeboard:
        from safeboard.tensorboard import SummaryWriter  # noqa: PLC0415

        writer: Any = SummaryWriter(str(work / "sb"), project="bench-writer")
    else:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: PLC0415

        writer = TorchWriter(str(work / f"tb-{time.monotonic_ns()}"))
    times = [t / 1e3 for t in loop(Writer(writer), steps * 10, media=False)]
    writer.close()
    return times


class Clock:
    """Step starts as a framework's callbacks see them."""

    def __init__(self) -> None:
        self.starts: list[int] = []

    def tick(self, *hook_args: Any, **hook_kwargs: Any) -> None:
        del hook_args, hook_kwargs
        self.starts.append(time.perf_counter_ns())

    def steps(self) -> Steps:
        gaps = [(b - a) / 1e3 for a, b in zip(self.starts, self.starts[1:], strict=False)]
        return gaps[2:]  # the first steps warm caches up

    def lightning(self, base: type[Any]) -> Any:
        return type("Clock", (base,), {"on_train_batch_start": self.tick})()

    def transformers(self, base: type[Any]) -> Any:
        return type("Clock", (base,), {"on_step_begin": self.tick})()


PATHS: dict[str, tuple[Callable[[int, Path, bool], Steps], str, str]] = {
    "Lightning": (lightning_steps, "no logger", "SafeboardLogger"),
    "HF Trainer": (transformers_steps, 'report_to="none"', "SafeboardCallback"),
    "Accelerate": (accelerate_steps, "no tracker", "SafeboardTracker"),
    "10 scalars": (writer_steps, "torch SummaryWriter", "safeboard drop-in"),
}


def table(results: dict[tuple[str, bool], Steps]) -> str:
    header = (
        "| path | without | with | median without | median with | added | mean without | "
        "mean with | added |"
    )
    lines = [
        header,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (_, without, with_) in PATHS.items():
        a, b = results[name, False], results[name, True]
        med = statistics.median(a), statistics.median(b)
        mean = statistics.fmean(a), statistics.fmean(b)
        lines.append(
            f"| {name} | {without} | {with_} | {med[0]:,.1f} us | {med[1]:,.1f} us | "
            f"{med[1] - med[0]:+,.1f} us | {mean[0]:,.1f} us | {mean[1]:,.1f} us | "
            f"{mean[1] - mean[0]:+,.1f} us |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 40 steps a path")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--safeboard", default=f"{sys.executable} -m safeboard")
    args = parser.parse_args()
    steps, rounds = (40, 1) if args.quick else (args.steps, args.rounds)
    results: dict[tuple[str, bool], Steps] = {}
    slowest: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory(prefix="integrations-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o700)
        os.environ["SAFEBOARD_SPOOL_DIR"] = str(work / "spool")
        with server_env(work, args.safeboard):
            for round_ in range(rounds):
                for name, (measure, _, _) in PATHS.items():
                    for with_ in (round_ % 2 == 1, round_ % 2 == 0):  # alternate the first
                        times = measure(steps, work, with_)
                        results.setdefault((name, with_), []).extend(times)
                        slowest[name, with_] = max(slowest.get((name, with_), 0.0), *times)
                        say(f"round {round_ + 1} {name} {'with' if with_ else 'without'}: "
                            f"median {statistics.median(times):,.1f} us")  # fmt: skip
    print(f"\n{rounds} round(s) of {steps:,} steps a path ({steps * 10:,} for the writers), "
          f"{SCALARS} metrics a step, torch {torch.__version__} on CPU, one thread\n")  # fmt: skip
    print(table(results))
    print("\nslowest step (blocking shows here): " + "; ".join(
        f"{name} {slowest[name, False] / 1e3:,.1f} ms without, "
        f"{slowest[name, True] / 1e3:,.1f} ms with" for name in PATHS
    ))  # fmt: skip
    ratio = statistics.median(results["10 scalars", False]) / statistics.median(
        results["10 scalars", True]
    )
    met = "met" if ratio >= TARGET else "NOT met"
    print(f"\ntarget: drop-in >= {TARGET:.0f}x cheaper than torch's writer for scalars: "
          f"{ratio:.1f}x ({met})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
