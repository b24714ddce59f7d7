#!/usr/bin/env python3
"""A training script written for ``torch.utils.tensorboard.SummaryWriter``, run with only
the import changed to ``safeboard.tensorboard`` (issue 17).

    scripts/writer-torch-check.py              # torch tensors (CUDA when there is a GPU):
                                               # torch's own writer first, then safeboard's
    scripts/writer-torch-check.py --numpy      # numpy inputs, no torch (what CI runs:
                                               # tests/integration/test_writer_dropin.py)

safeboard's writer logs to an offline run spooled under ``--spool`` (a temporary directory
unless given); the script then checks that every call left something in the spool, prints
what, and exits 1 when a call left nothing or raised. The run id is the last line printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


class TinyModel:  # what add_graph gets without torch: anything with a repr
    def __repr__(self) -> str:
        return "TinyModel(Linear(4 -> 2))"


def training_script(
    summary_writer: type, tensor: Callable[[Any], Any], log_dir: str, model: Any, sample: Any
) -> Any:
    """The calls a PyTorch script makes, as torch's writer takes them."""
    rng = np.random.default_rng(0)
    writer = summary_writer(log_dir=log_dir, comment="-check")
    for step in range(300):
        loss = tensor(np.float32(1.0 / (step + 1)))
        writer.add_scalar("loss/train", loss, step)
        writer.add_scalar("lr", 0.1, global_step=step, walltime=1_700_000_000.0 + step)
        writer.add_scalars("acc", {"train": step / 300, "val": step / 600}, step)
        if step % 100 == 0:
            writer.add_histogram("weights/fc", tensor(rng.standard_normal(1000)), step)
            writer.add_image("sample", tensor(rng.random((3, 16, 16), dtype=np.float32)), step)
            writer.add_text("status", f"step {step}", step)
    writer.add_histogram("bins", tensor(rng.random(100)), 0, bins="auto")
    writer.add_histogram_raw(
        "raw", min=0.0, max=3.0, num=6, sum=9.0, sum_squares=15.0,
        bucket_limits=[1.0, 2.0, 3.0], bucket_counts=[1, 2, 3], global_step=0,
    )  # fmt: skip
    writer.add_images("batch", tensor(rng.random((10, 3, 8, 8), dtype=np.float32)), 0)
    writer.add_image("hwc", tensor(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)), 0,
                     dataformats="HWC")  # fmt: skip
    writer.add_image("gray", tensor(rng.random((8, 8), dtype=np.float32)), 0, dataformats="HW")
    writer.add_image_with_boxes(
        "boxes", tensor(rng.random((3, 32, 32), dtype=np.float32)),
        tensor(np.array([[2.0, 2.0, 20.0, 20.0]])), 0, labels=["cat"],
    )  # fmt: skip
    writer.add_text("notes", "first try")
    writer.add_hparams({"lr": 0.1, "bs": 32}, {"hparam/score": 0.9})
    writer.add_hparams({"lr": 0.01, "bs": 64}, {"hparam/score": 0.95})
    labels = tensor(rng.integers(0, 2, 200))
    writer.add_pr_curve("pr", labels, tensor(rng.random(200, dtype=np.float32)), 0)
    writer.add_embedding(
        tensor(rng.random((20, 5), dtype=np.float32)), metadata=[str(i % 3) for i in range(20)],
        label_img=tensor(rng.random((20, 3, 4, 4), dtype=np.float32)), global_step=0,
    )  # fmt: skip
    writer.add_custom_scalars({"losses": {"train vs val": ["Multiline", ["loss/train", "lr"]]}})
    writer.add_graph(model, sample)
    writer.add_audio("tone", tensor(np.sin(np.linspace(0, 880, 8000))[None, :]), 0, 8000)
    writer.add_video("clip", tensor(rng.random((1, 4, 3, 8, 8), dtype=np.float32)), 0, fps=2)
    writer.add_mesh("points", tensor(rng.random((1, 5, 3), dtype=np.float32)), global_step=0)
    if not writer.get_logdir() == writer.log_dir == log_dir:
        raise SystemExit(f"get_logdir() {writer.get_logdir()} and log_dir {writer.log_dir}")
    writer.flush()
    writer.close()
    return writer


FILES = [
    "pr_curves/pr/0.json", "embeddings/default/0/tensors.tsv",
    "embeddings/default/0/metadata.tsv", "layouts/custom_scalars.json", "audio/tone/0.wav",
    "videos/clip/0.gif", "meshes/points/0.npz",
]  # fmt: skip
IMAGES = [("sample", 0), ("sample", 100), ("sample", 200), ("batch", 0), ("hwc", 0),
          ("gray", 0), ("boxes", 0), ("embeddings/default/0/sprite", 0)]  # fmt: skip
HISTOGRAMS = {"weights/fc", "bins", "raw"}
TEXTS = {"status", "notes"}


def check_spool(spool: Path, run_id: str) -> list[str]:
    """What is missing from the spooled run (nothing, when every call was stored)."""
    folder = spool / run_id
    meta = json.loads((folder / "run.json").read_text())
    records = [json.loads(p.read_text()) for p in folder.glob("artifact-*.json")]
    names = [r["name"] for r in records]
    missing = [name for name in FILES if name not in names]
    if not any(name.startswith("graphs/") for name in names):
        missing.append("graphs/<model>")
    stored = {(r["name"], r.get("step")) for r in records}
    for tag, step in IMAGES:
        if (tag, step) not in stored:
            missing.append(f"the image {tag} at step {step}")
    histograms = {h["key"] for r in records for h in r.get("histograms", [])}
    texts = {t["key"] for r in records for t in r.get("texts", [])}
    missing += [f"the histogram {k}" for k in sorted(HISTOGRAMS - histograms)]
    missing += [f"the text {k}" for k in sorted(TEXTS - texts)]
    runs = meta["config"].get("hparams", [])
    if [r["hparams"]["lr"] for r in runs] != [0.1, 0.01]:
        missing.append(f"two hparams records (got {runs})")
    if meta["config"].get("_charts") != {"acc": ["acc/train", "acc/val"]}:
        missing.append("the chart group acc")
    print(f"{len(names)} artifact records: {', '.join(sorted(set(names)))}")
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numpy", action="store_true", help="numpy inputs, no torch")
    parser.add_argument("--spool", type=Path, help="where safeboard's offline run is spooled")
    args = parser.parse_args()
    os.environ["SAFEBOARD_MODE"] = "offline"
    spool = args.spool or Path(tempfile.mkdtemp(prefix="writer-check-"))
    os.environ["SAFEBOARD_SPOOL_DIR"] = str(spool)
    work = Path(tempfile.mkdtemp(prefix="writer-logs-"))
    from safeboard.tensorboard import SummaryWriter  # noqa: PLC0415  (after the environment)

    model: Any = TinyModel()
    sample: Any = None
    tensor: Callable[[Any], Any] = np.asarray
    if not args.numpy:
        import torch  # noqa: PLC0415  (the GPU machine's check)
        from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: PLC0415

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = torch.nn.Linear(4, 2).to(device)
        sample = torch.zeros(1, 4, device=device)
        tensor = lambda a: torch.as_tensor(np.asarray(a)).to(device)  # noqa: E731
        training_script(TorchWriter, tensor, str(work / "torch"), model, sample)
        print(f"torch {torch.__version__} on {device}: torch's own writer ran every call")
    writer = training_script(SummaryWriter, tensor, str(work / "safeboard"), model, sample)
    missing = check_spool(spool, writer.run.id)
    for what in missing:
        print(f"MISSING: {what}")
    print(writer.run.id)
    shutil.rmtree(work, ignore_errors=True)  # the log directories (the spool is kept)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
