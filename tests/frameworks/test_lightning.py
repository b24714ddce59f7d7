"""SafeboardLogger with a real Lightning Trainer: a 2-layer MLP, 2 epochs on 64 random
samples, for both package names; what reached the server is read back through its API."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.frameworks.conftest import Seen

pytestmark = pytest.mark.e2e

BATCHES = 4  # 64 samples in batches of 16: 4 steps an epoch


def module_class(package: str) -> type[Any]:
    pl = importlib.import_module(package)

    class Tiny(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self, hidden: int = 8, optim: dict[str, Any] | None = None,
                     fail_at: int = -1) -> None:  # fmt: skip
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.fail_at = fail_at
            del optim  # in self.hparams (save_hyperparameters)

        def step(self, batch: Any) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            del index
            if self.global_step == self.fail_at:
                raise RuntimeError("diverged")
            loss = self.step(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            del index
            self.log("val_loss", self.step(batch))

        def test_step(self, batch: Any, index: int) -> None:
            del index
            self.log("test_loss", self.step(batch))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams["optim"]["lr"])

    return Tiny


def data() -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def trainer(package: str, logger: Any, tmp_path: Path, **kwargs: Any) -> Any:
    pl = importlib.import_module(package)
    return pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=logger, log_every_n_steps=1,
        default_root_dir=str(tmp_path), enable_progress_bar=False,
        enable_model_summary=False, **kwargs,
    )  # fmt: skip


def test_lightning_fit_then_test_in_one_run(seen: Seen, tmp_path: Path) -> None:
    from safeboard.integrations.lightning import SafeboardLogger

    logger = SafeboardLogger(project="pl", name="mlp", log_model="all", save_dir=str(tmp_path))
    keep = importlib.import_module("lightning.pytorch.callbacks").ModelCheckpoint(save_last=True)
    fit = trainer("lightning.pytorch", logger, tmp_path, callbacks=[keep])
    model = module_class("lightning.pytorch")(hidden=8, optim={"lr": 0.05, "momentum": None})
    fit.fit(model, data(), data())
    fit.test(model, data())  # after fit's finalize("success"): the same run
    run_id = logger.version
    assert run_id == logger.experiment.id
    assert logger.name == "pl"
    checkpoints = Path(fit.checkpoint_callback.dirpath)
    assert checkpoints == tmp_path / "pl" / run_id / "checkpoints"
    logger.finish()

    run = seen.run(run_id)
    assert (run["name"], run["status"]) == ("mlp", "finished")
    assert run["config"] == {"hidden": 8, "optim/lr": 0.05, "optim/momentum": None,
                             "fail_at": -1}  # fmt: skip
    counts = seen.counts(run_id)
    assert counts["train_loss"] == 2 * BATCHES
    assert counts["val_loss"] == 2
    assert counts["test_loss"] == 1
    steps, values = seen.points(run_id, "train_loss")
    assert steps == list(range(2 * BATCHES))
    assert all(isinstance(v, float) for v in values)
    stored = seen.artifacts(run_id)
    # log_model="all": each checkpoint as it was saved. The first epoch's was deleted on
    # disk when the second's took its place (save_top_k=1), and last.ckpt was written over:
    # all stored, from copies, the two last.ckpt with their own contents.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    assert sorted(item["name"] for item in stored) == [
        "checkpoints/epoch=0-step=4.ckpt", "checkpoints/epoch=1-step=8.ckpt",
        "checkpoints/last.ckpt", "checkpoints/last.ckpt",
    ]  # fmt: skip
    assert all(item["kind"] == "model" and item["state"] == "ready" for item in stored)
    lasts = [item["sha256"] for item in stored if item["name"] == "checkpoints/last.ckpt"]
    assert lasts[0] != lasts[1]


def test_pytorch_lightning_package_and_a_failure(seen: Seen, tmp_path: Path) -> None:
    """The older package name has its own class; a failure in training ends the run
    failed, the exception reaching the script as before."""
    import pytorch_lightning

    from safeboard.integrations.pytorch_lightning import SafeboardLogger

    logger = SafeboardLogger(project="pl")
    assert isinstance(logger, pytorch_lightning.loggers.Logger)
    fit = trainer("pytorch_lightning", logger, tmp_path, enable_checkpointing=False)
    model = module_class("pytorch_lightning")(optim={"lr": 0.05}, fail_at=BATCHES + 1)
    with pytest.raises(RuntimeError, match="diverged"):
        fit.fit(model, data())
    run = seen.run(logger.version)
    assert run["status"] == "failed"
    assert seen.counts(logger.version)["train_loss"] == BATCHES + 1


SCRIPT = """
import sys
import lightning.pytorch as pl
from tests.frameworks.test_lightning import data, module_class
from safeboard.integrations.lightning import SafeboardLogger

logger = SafeboardLogger(project="pl-script")
trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, accelerator="cpu",
                     enable_progress_bar=False, enable_checkpointing=False,
                     default_root_dir=sys.argv[1])
trainer.fit(module_class("lightning.pytorch")(optim={"lr": 0.1}), data())
print(logger.version)
"""


def test_a_script_ends_its_run_finished(seen: Seen, tmp_path: Path) -> None:
    """No finish() in the script: the run ends ``finished`` when the script does."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)])}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
        text=True, timeout=300, check=False, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    assert seen.run(run_id)["status"] == "finished"
    assert seen.counts(run_id)["train_loss"] == BATCHES
