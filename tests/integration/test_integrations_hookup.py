"""What the PyTorch integrations share (safeboard/integrations/_hookup.py), with real
offline runs spooled in a temporary directory: which run an integration logs into and
whether it ends it, and the checkpoint copies it uploads. With the frameworks and a server:
tests/frameworks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import safeboard
from safeboard.integrations._hookup import start_run, store_copy
from safeboard.sdk.run import live_run


def offline(tmp_path: Path) -> dict[str, object]:
    return {"mode": "offline", "spool_dir": str(tmp_path / "spool"), "quiet": True}


def test_a_run_given_is_used_and_never_ended(tmp_path: Path) -> None:
    run = safeboard.init("p", **offline(tmp_path))  # type: ignore[arg-type]
    assert start_run(run, "other", None, {}) == (run, False)
    run.finish()


def test_a_run_started_is_the_integrations_to_end(tmp_path: Path) -> None:
    run, own = start_run(None, "p", "n", offline(tmp_path))
    assert own
    assert (run.project, run.name) == ("p", "n")
    assert live_run(run.id) is run
    run.finish()
    assert live_run(run.id) is None  # finished: no longer live


def test_inside_a_task_the_run_held_is_reused_not_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's run that this process already holds (the script's init(), or another
    integration's) is logged into: a second init() would find its spool locked."""
    held = safeboard.init("p", **offline(tmp_path))  # type: ignore[arg-type]
    monkeypatch.setenv("SAFEBOARD_TASK_TOKEN", "sbt_not-used")
    monkeypatch.setenv("SAFEBOARD_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("SAFEBOARD_RUN_ID", held.id)
    assert start_run(None, "ignored", None, {}) == (held, False)
    held.finish()


def test_a_checkpoint_is_uploaded_from_a_copy_in_the_spool(tmp_path: Path) -> None:
    run = safeboard.init("p", **offline(tmp_path))  # type: ignore[arg-type]
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"epoch 0")
    store_copy(run, checkpoint, "checkpoints/last.ckpt", step=3)
    checkpoint.write_bytes(b"epoch 1, written over")  # as Lightning does
    run.finish()
    [record] = run.spool.pending_artifacts()
    assert (record["name"], record["kind"], record["step"]) == ("checkpoints/last.ckpt", "model", 3)
    copy = Path(record["path"])
    assert copy.parent == run.spool.path
    assert copy.read_bytes() == b"epoch 0"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
