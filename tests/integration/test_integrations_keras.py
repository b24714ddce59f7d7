"""The Keras 3 callback (safeboard.integrations.keras) with the real Keras on JAX's CPU
backend: a tiny model trained for two epochs, its run delivered through the spool and
`safeboard sync` to the in-process app, and read back over the API: one point per epoch,
batch logs every N batches, the training's parameters, the model as an artifact, and a
training that raises ending its run as failed."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported, here or anywhere

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from safeboard.auth.permissions import Scope
from safeboard.sdk.sync import sync_all
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

keras = pytest.importorskip("keras")
from safeboard.integrations.keras import SafeboardCallback  # noqa: E402  (after Keras)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[World]:
    # SQLite only: the callback writes through the SDK, whose paths the store tests cover.
    built = build_world(make_settings, f"sqlite:///{tmp_path / 'safeboard.db'}")
    built.user("olga")
    yield built
    await built.close()


def _model() -> Any:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((64, 4), dtype=np.float32), rng.random((64, 1), dtype=np.float32)


async def _sync(world: World, root: Path) -> None:
    key = world.key("olga", Scope.WRITE)
    transport = _AppTransport(world.app)
    results = await anyio.to_thread.run_sync(
        lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
    )
    assert all(result.done for result in results), [r.error for r in results]


async def _get(world: World, path: str) -> Any:
    client = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_fit_logs_each_epoch_its_batches_and_its_parameters(
    world: World, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    callback = SafeboardCallback(
        "mnist", name="dense", config={"seed": 7}, mode="offline", spool_dir=spool,
        quiet=True, log_every_n_steps=2, log_model=True,
    )  # fmt: skip
    x, y = _data()
    _model().fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
                 callbacks=[callback])  # fmt: skip
    assert callback.run is not None
    await _sync(world, spool)

    run = await _get(world, f"/api/v1/runs/{callback.run.id}")
    assert (run["name"], run["status"]) == ("dense", "finished")
    counts = {m["key"]: m["count"] for m in run["metrics"]}
    # 48 training samples in batches of 8: 6 batches an epoch, every 2nd logged.
    assert counts == {"loss": 2, "mae": 2, "val_loss": 2, "val_mae": 2,
                      "batch/loss": 6, "batch/mae": 6}  # fmt: skip
    loss = await _get(world, f"/api/v1/runs/{callback.run.id}/points?metric=loss")
    assert loss["steps"] == [0, 1]  # step = epoch
    batches = await _get(world, f"/api/v1/runs/{callback.run.id}/points?metric=batch/loss")
    assert batches["steps"] == [1, 3, 5, 7, 9, 11]  # epoch * 6 + batch, batches 1, 3, 5

    config = run["config"]
    assert config["seed"] == 7
    keras_params = config["keras"]
    assert (keras_params["epochs"], keras_params["steps_per_epoch"]) == (2, 6)
    assert keras_params["parameters"] == 4 * 8 + 8 + 8 + 1
    assert keras_params["optimizer"]["name"] == "adam"
    assert keras_params["optimizer"]["learning_rate"] == pytest.approx(0.01)

    listed = await _get(world, f"/api/v1/runs/{callback.run.id}/artifacts")
    assert [(a["name"], a["kind"], a["state"]) for a in listed["items"]] == [
        ("sequential.keras", "model", "ready")
    ]


class Boom(RuntimeError):
    pass


class _RaiseAt(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:  # noqa: ARG002
        if epoch == 1:
            raise Boom("the loss went to NaN")


async def test_a_training_that_raises_ends_its_run_as_failed(world: World, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    x, y = _data()
    with pytest.raises(Boom):  # noqa: SIM117  (the callback's block must see the error)
        with SafeboardCallback("mnist", mode="offline", spool_dir=spool, quiet=True) as callback:
            _model().fit(x, y, epochs=3, batch_size=16, verbose=0,
                         callbacks=[callback, _RaiseAt()])  # fmt: skip
    assert callback.run is not None
    await _sync(world, spool)
    run = await _get(world, f"/api/v1/runs/{callback.run.id}")
    assert run["status"] == "failed"
    assert {m["key"]: m["count"] for m in run["metrics"]} == {"loss": 2, "mae": 2}


async def test_a_fit_after_one_that_raised_gets_a_run_of_its_own(
    world: World, tmp_path: Path
) -> None:
    """A script that catches a failed fit and fits again (a smaller batch after running out
    of memory): the second fit used to log into the first one's run, which then ended
    ``finished`` with both trainings' epochs mixed at the same steps."""
    spool = tmp_path / "spool"
    x, y = _data()
    callback = SafeboardCallback("mnist", mode="offline", spool_dir=spool, quiet=True)
    with pytest.raises(Boom):
        _model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback, _RaiseAt()])
    assert callback.run is not None
    failed = callback.run.id
    _model().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    assert callback.run.id != failed
    await _sync(world, spool)
    first = await _get(world, f"/api/v1/runs/{failed}")
    assert first["status"] == "failed"
    assert {m["key"]: m["count"] for m in first["metrics"]} == {"loss": 2, "mae": 2}
    second = await _get(world, f"/api/v1/runs/{callback.run.id}")
    assert second["status"] == "finished"
    assert {m["key"]: m["count"] for m in second["metrics"]} == {"loss": 2, "mae": 2}


def test_a_run_passed_in_is_logged_to_and_left_open(tmp_path: Path) -> None:
    import safeboard

    run = safeboard.init("mnist", mode="offline", spool_dir=tmp_path, quiet=True)
    x, y = _data()
    _model().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[SafeboardCallback(run=run)])
    assert not run._finished  # its owner finishes it
    run.log({"test_loss": 0.5}, step=2)
    run.finish()


SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras, numpy as np
from safeboard.integrations.keras import SafeboardCallback

class Boom(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("out of memory")

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
callback = SafeboardCallback("mnist", mode="offline", spool_dir=sys.argv[1], quiet=True)
try:
    model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=2, verbose=0, callbacks=[callback, Boom()])
except RuntimeError:
    print("caught, going on", file=sys.stderr)
print(callback.run.id)
"""


async def test_a_fit_that_raised_in_a_script_that_went_on_is_failed_at_exit(
    world: World, tmp_path: Path
) -> None:
    """Without the ``with`` block: Keras calls no callback when fit() raises, and the SDK
    alone would mark the run finished at exit (the script ended normally)."""
    import subprocess
    import sys

    spool = tmp_path / "spool"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[2]
    done = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, str(script), str(spool)], capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL, cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(root / "src")},
    ))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    await _sync(world, spool)
    run = await _get(world, f"/api/v1/runs/{run_id}")
    assert run["status"] == "failed"
    assert {m["key"]: m["count"] for m in run["metrics"]} == {"loss": 1}
