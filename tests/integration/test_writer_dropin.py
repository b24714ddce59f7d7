"""The SummaryWriter drop-in against the in-process app, on SQLite and PostgreSQL (issue
17): a script written for torch's writer, only the import changed, runs to the end with
numpy inputs (scripts/writer-torch-check.py --numpy, the calls the GPU check makes with
torch tensors), and what it logged reaches the server through `safeboard sync`."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import safeboard
from safeboard.auth.permissions import Scope
from safeboard.sdk.run import Run
from safeboard.sdk.spool import RunSpool
from safeboard.sdk.sync import sync_all
from safeboard.settings import Settings
from safeboard.tensorboard import SummaryWriter
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "writer-torch-check.py"


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    yield built
    await built.close()


async def _sync(world: World, root: Path) -> None:
    key = world.key("olga", Scope.WRITE)
    transport = _AppTransport(world.app)
    (result,) = await anyio.to_thread.run_sync(
        lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
    )
    assert result.done, result.error


async def _get(world: World, path: str) -> Any:
    key = world.key("olga", Scope.READ)
    client = world.client(Authorization=f"Bearer {key}")
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_torch_script_with_only_the_import_changed_reaches_the_server(
    world: World, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    result = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, str(CHECK), "--numpy", "--spool", str(spool)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                       "PYTHONPATH": str(ROOT / "src")},
    ))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    await _sync(world, spool)
    run = await _get(world, f"/api/v1/runs/{run_id}")
    assert run["name"] == "safeboard-check"
    assert run["status"] == "finished"
    counts = {m["key"]: m["count"] for m in run["metrics"]}
    assert counts == {"loss/train": 300, "lr": 300, "acc/train": 300, "acc/val": 300,
                      "hparam/score": 2}  # fmt: skip
    records = run["config"]["hparams"]
    assert [(r["hparams"], r["metrics"]) for r in records] == [
        ({"lr": 0.1, "bs": 32}, {"hparam/score": 0.9}),
        ({"lr": 0.01, "bs": 64}, {"hparam/score": 0.95}),
    ]
    listed = await _get(world, f"/api/v1/runs/{run_id}/artifacts")
    artifacts = {(a["name"], a["step"]): a for a in listed["items"]}
    assert {a["state"] for a in artifacts.values()} == {"ready"}
    assert artifacts["videos/clip/0.gif", 0]["content_type"] == "image/gif"
    assert ("graphs/TinyModel.txt", None) in artifacts
    assert artifacts["sample", 100]["kind"] == "image"  # the series "sample" at step 100


def _writer(tmp_path: Path) -> tuple[SummaryWriter, Run]:
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path / "spool", quiet=True)
    return SummaryWriter(str(tmp_path / "logs" / "exp"), run=run), run


def test_a_write_after_close_warns_once_and_stores_nothing(tmp_path: Path) -> None:
    writer, run = _writer(tmp_path)
    writer.add_scalar("loss", 1.0, 0)
    writer.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.add_scalar("loss", 2.0, 1)
        writer.add_image("img", np.zeros((3, 4, 4)), 1)
        writer.add_histogram("h", [1.0, 2.0], 1)
    assert [(w.category, str(w.message)[:36]) for w in caught] == [
        (RuntimeWarning, "SummaryWriter.add_scalar after close")
    ]
    assert caught[0].filename == __file__  # the script's line, not the SDK's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.add_text("t", "later", 2)  # said once: no second warning
        writer.close()  # a second close() does nothing
    run.finish()
    assert RunSpool(tmp_path / "spool", run.id).pending_points() == 1


def test_inputs_it_cannot_store_are_said_once_and_never_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer, run = _writer(tmp_path)
    with writer:
        writer.add_image("bad", np.zeros((5, 4, 4)), 0)  # 5 channels, CHW: kept as 3
        writer.add_image("bad", "not an image", 1)
        writer.add_image("bad", "not an image", 2)
        writer.add_figure("fig", object(), 0)
        writer.add_audio("a", np.zeros((20, 10)), 0)
        writer.add_scalar("loss", "NaN?", 0)
        writer.add_embedding(np.zeros(3))
    run.finish()
    said = capsys.readouterr().err
    assert said.count("SummaryWriter.add_image: not stored") == 1
    for method in ("add_figure", "add_audio", "add_scalar", "add_embedding"):
        assert f"SummaryWriter.{method}: not stored" in said
    assert "Traceback" not in said
    names = [r["name"] for r in RunSpool(tmp_path / "spool", run.id).pending_artifacts()]
    assert names == ["bad"]


def test_log_dir_is_torchs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default runs/<date>_<host><comment>, created; the run is named after it."""
    monkeypatch.chdir(tmp_path)
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path / "spool", quiet=True)
    writer = SummaryWriter(comment="-lr0.1", run=run)
    assert writer.get_logdir() == writer.log_dir == writer.logdir
    assert writer.log_dir.startswith("runs/")
    assert writer.log_dir.endswith("-lr0.1")
    assert (tmp_path / writer.log_dir).is_dir()
    writer.close()
    run.finish()


def test_histograms_and_images_use_the_runs_series_when_it_has_them(tmp_path: Path) -> None:
    writer, run = _writer(tmp_path)
    writer.add_histogram("w", np.arange(100.0), 3)
    writer.add_image("img", np.zeros((3, 4, 4)), 3)
    writer.add_text("t", "hello", 3)
    writer.close()
    run.finish()
    records = RunSpool(tmp_path / "spool", run.id).pending_artifacts()
    assert [(r["name"], r["step"]) for r in records if r["name"] == "img"] == [("img", 3)]
    assert [h["key"] for r in records for h in r.get("histograms", [])] == ["w"]
    assert [(t["key"], t["text"]) for r in records for t in r.get("texts", [])] == [("t", "hello")]
    assert "histograms/writer.jsonl" not in [r["name"] for r in records]


async def test_notes_set_offline_reach_the_server_with_the_run(
    world: World, tmp_path: Path
) -> None:
    """The drop-in's texts become notes without the text series; an offline run's notes
    went nowhere at `safeboard sync` before (the run was created without them)."""
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True)
    run.set_notes("first try")
    run.log({"loss": 1.0}, step=0)
    run.finish()
    await _sync(world, tmp_path)
    assert (await _get(world, f"/api/v1/runs/{run.id}"))["notes"] == "first try"
