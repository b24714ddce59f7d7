"""The Optuna study callback (safeboard.integrations.optuna) with the real Optuna: a study
of four trials (one pruned, one failed) gives one run per trial, delivered through the
spool and `safeboard sync` to the in-process app: the trial's parameters as config, its
objective value and reported values as metrics, the study as a tag, its state as the
run's status; an objective decorated with track_in_safeboard logs into its trial's run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from safeboard.auth.permissions import Scope
from safeboard.sdk.spool import spooled_runs
from safeboard.sdk.sync import sync_all
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

optuna = pytest.importorskip("optuna")
from safeboard.integrations.optuna import SafeboardOptunaCallback  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[World]:
    # SQLite only: the callback writes through the SDK, whose paths the store tests cover.
    built = build_world(make_settings, f"sqlite:///{tmp_path / 'safeboard.db'}")
    built.user("olga")
    yield built
    await built.close()


async def _runs(world: World, root: Path) -> dict[str, Any]:
    """Every run spooled under ``root``, synced, by name."""
    key = world.key("olga", Scope.WRITE)
    transport = _AppTransport(world.app)
    results = await anyio.to_thread.run_sync(
        lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
    )
    assert all(result.done for result in results), [r.error for r in results]
    client = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    runs = {}
    for result in results:
        answer = await client.get(f"/api/v1/runs/{result.run_id}")
        assert answer.status_code == 200, answer.text
        runs[answer.json()["name"]] = answer.json()
    return runs


def _study(name: str) -> Any:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(study_name=name, sampler=optuna.samplers.RandomSampler(seed=3))


def _objective(trial: Any) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    layers = trial.suggest_int("layers", 1, 3)
    trial.suggest_categorical("activation", ["relu", None])
    for step in range(3):
        trial.report(x * x + step, step)
    if trial.number == 1:
        raise optuna.TrialPruned
    if trial.number == 2:
        raise ValueError("diverged")
    return x * x + layers


async def test_one_run_per_trial_with_params_objective_and_state(
    world: World, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    callback = SafeboardOptunaCallback("tuning", mode="offline", spool_dir=spool, quiet=True)
    study = _study("search")
    study.optimize(_objective, n_trials=4, callbacks=[callback], catch=(ValueError,))

    runs = await _runs(world, spool)
    assert sorted(runs) == ["trial-0", "trial-1", "trial-2", "trial-3"]
    states = {name: (run["status"], run["tags"]["optuna_state"]) for name, run in runs.items()}
    assert states == {
        "trial-0": ("finished", "complete"), "trial-1": ("killed", "pruned"),
        "trial-2": ("failed", "fail"), "trial-3": ("finished", "complete"),
    }  # fmt: skip
    for trial in study.trials:
        run = runs[f"trial-{trial.number}"]
        assert run["project"] == "tuning"
        assert run["tags"]["study"] == "search"
        expected = {**trial.params, "activation": repr(trial.params["activation"])}
        if trial.params["activation"] is not None:
            expected["activation"] = trial.params["activation"]
        assert run["config"] == expected
        counts = {m["key"]: m["count"] for m in run["metrics"]}
        # A pruned trial's value is its last reported one (Optuna's); a failed one has none.
        failed = trial.state == optuna.trial.TrialState.FAIL
        assert counts.get("value") == (None if failed else 1)
        assert counts["intermediate"] == 3  # trial.report, at their steps
        # best_value once a trial has completed: trial 0 did.
        assert counts["best_value"] == 1
    values = {m["key"]: m["last_value"] for m in runs["trial-3"]["metrics"]}
    assert values["value"] == pytest.approx(study.trials[3].value)
    assert values["best_value"] == pytest.approx(study.best_value)


async def test_a_tracked_objective_logs_into_its_trials_run(world: World, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    callback = SafeboardOptunaCallback(
        "tuning", metric_name="score", tags={"team": "vision"}, mode="offline", spool_dir=spool,
        quiet=True,
    )  # fmt: skip

    @callback.track_in_safeboard()
    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        run = callback.run_of(trial)
        for epoch in range(4):
            run.log({"loss": lr / (epoch + 1)}, step=epoch)
        if trial.number == 1:
            raise RuntimeError("out of memory")  # not caught by the study: it stops
        return lr

    study = _study("tracked")
    with pytest.raises(RuntimeError, match="out of memory"):
        study.optimize(objective, n_trials=3, callbacks=[callback])

    runs = await _runs(world, spool)
    assert sorted(runs) == ["trial-0", "trial-1"]
    assert runs["trial-0"]["status"] == "finished"
    assert runs["trial-1"]["status"] == "failed"  # the decorator ended it: no callback came
    for name, run in runs.items():
        state = "complete" if name == "trial-0" else "fail"
        assert run["tags"] == {"team": "vision", "study": "tracked", "optuna_state": state}
        assert set(run["config"]) == {"lr"}
    counts = {m["key"]: m["count"] for m in runs["trial-0"]["metrics"]}
    assert counts == {"loss": 4, "score": 1, "best_value": 1}
    assert {m["key"]: m["count"] for m in runs["trial-1"]["metrics"]} == {"loss": 4}


def test_run_of_outside_a_tracked_objective_says_what_to_do() -> None:
    callback = SafeboardOptunaCallback("tuning", mode="offline")
    trial = optuna.trial.FixedTrial({"x": 1.0})
    with pytest.raises(LookupError, match="track_in_safeboard"):
        callback.run_of(trial)


async def test_several_objectives_are_named_and_have_no_best_value(
    world: World, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    named = SafeboardOptunaCallback(
        "tuning", metric_name=["loss", "acc"], mode="offline", spool_dir=spool / "a", quiet=True
    )
    plain = SafeboardOptunaCallback("plain", mode="offline", spool_dir=spool / "b", quiet=True)
    for callback in (named, plain):
        study = optuna.create_study(directions=["minimize", "maximize"])
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1,
                       callbacks=[callback])  # fmt: skip
    for folder, expected in (("a", ["acc", "loss"]), ("b", ["value/0", "value/1"])):
        (run,) = (await _runs(world, spool / folder)).values()
        assert sorted(m["key"] for m in run["metrics"]) == expected  # no best_value
    wrong = SafeboardOptunaCallback(
        "x", metric_name=["only-one"], mode="offline", spool_dir=spool / "c", quiet=True
    )
    study = optuna.create_study(directions=["minimize", "maximize"])
    with pytest.raises(ValueError, match="names 1 values"):
        study.optimize(lambda _trial: (1.0, 2.0), n_trials=1, callbacks=[wrong])
    ran: list[int] = []

    @wrong.track_in_safeboard()
    def objective(trial: Any) -> tuple[float, float]:
        ran.append(trial.number)
        return 1.0, 2.0

    with pytest.raises(ValueError, match="names 1 values"):
        study.optimize(objective, n_trials=1, callbacks=[wrong])
    assert ran == []  # refused before the objective and before any run
    assert spooled_runs(spool / "c") == []  # no run left open until the process exits
