"""SafeboardCallback with a real Hugging Face Trainer: a tiny BERT built from a config
(nothing downloaded), 6 steps; what reached the server is read back through its API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from tests.frameworks.conftest import Seen

pytestmark = pytest.mark.e2e

STEPS = 6


def dataset(size: int = 24) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (size, 8), generator=generator)
    return [{"input_ids": row, "labels": int(row[0] % 2)} for row in ids]


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=2,
    ))  # fmt: skip


def arguments(tmp_path: Path, **kwargs: Any) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=STEPS, per_device_train_batch_size=4,
        logging_steps=1, save_steps=3, save_total_limit=1, report_to="none", use_cpu=True,
        disable_tqdm=True, learning_rate=1e-3, run_name="bert-tiny", **kwargs,
    )  # fmt: skip


def test_trainer_logs_params_metrics_and_checkpoints(seen: Seen, tmp_path: Path) -> None:
    from safeboard.integrations.transformers import SafeboardCallback

    callback = SafeboardCallback(project="hf", log_checkpoints=True)
    trainer = Trainer(
        model=tiny_bert(), args=arguments(tmp_path), train_dataset=dataset(),
        eval_dataset=dataset(8), callbacks=[callback],
    )  # fmt: skip
    trainer.train()
    assert callback.run is None  # finished at the end of training
    [run_id] = [r["id"] for r in seen_runs(seen, "hf")]
    run = seen.run(run_id)
    assert (run["name"], run["status"]) == ("bert-tiny", "finished")
    assert run["config"]["learning_rate"] == 1e-3
    assert run["config"]["max_steps"] == STEPS
    assert run["config"]["model/hidden_size"] == 16  # the model's config, flattened
    assert run["config"]["model/model_type"] == "bert"
    counts = seen.counts(run_id)
    assert counts["loss"] == STEPS
    assert counts["learning_rate"] == STEPS
    assert counts["train_runtime"] == 1  # the summary at the end, numbers only
    steps, _ = seen.points(run_id, "loss")
    assert steps == list(range(1, STEPS + 1))  # at state.global_step
    stored = {item["name"]: item for item in seen.artifacts(run_id)}
    # checkpoint-3 was deleted by save_total_limit=1 when checkpoint-6 came: stored anyway.
    assert not (tmp_path / "out" / "checkpoint-3").exists()
    for step in (3, 6):
        assert f"checkpoint-{step}/model.safetensors" in stored
        assert f"checkpoint-{step}/trainer_state.json" in stored
    assert all(item["kind"] == "model" and item["state"] == "ready" for item in stored.values())

    # trainer.evaluate() after train(): the run is finished, so a new one holds the result.
    trainer.evaluate()
    assert callback.run is not None
    callback.finish()
    runs = seen_runs(seen, "hf")
    assert len(runs) == 2
    [later] = [r["id"] for r in runs if r["id"] != run_id]
    assert "eval_loss" in seen.counts(later)


def test_a_run_given_is_used_and_left_open(seen: Seen, tmp_path: Path) -> None:
    """``run=``: the callback logs into the script's own run and leaves finishing to it."""
    import safeboard
    from safeboard.integrations.transformers import SafeboardCallback

    run = safeboard.init("hf-own", config={"mine": 1})
    trainer = Trainer(
        model=tiny_bert(), args=arguments(tmp_path, max_grad_norm=0.5),
        train_dataset=dataset(), callbacks=[SafeboardCallback(run=run)],
    )  # fmt: skip
    trainer.train()
    assert seen.run(run.id)["status"] == "running"
    run.log({"after": 1.0})
    run.finish()
    found = seen.run(run.id)
    assert found["status"] == "finished"
    assert found["config"]["mine"] == 1
    assert found["config"]["max_grad_norm"] == 0.5
    assert seen.counts(run.id)["loss"] == STEPS


def seen_runs(seen: Seen, project: str) -> list[dict[str, Any]]:
    return list(seen.get(f"/projects/{project}/runs")["runs"])
