"""Optuna: ``study.optimize(objective, callbacks=[SafeboardOptunaCallback("tuning")])``.

One run per trial (docs/integrations.md, "Optuna"): named ``trial-<number>``, tagged with
the study's name, the trial's parameters as its config, the objective value(s) as metrics
(``value``, or ``value/<i>`` for several objectives, or the names given as
``metric_name``), the values the trial reported (``trial.report``) as ``intermediate`` at
their steps, the study's best value so far as ``best_value``, and the trial's state as
the run's final status: complete -> finished, pruned -> killed, failed -> failed.

The callback runs when a trial has ended. To log from inside the objective, decorate it::

    callback = SafeboardOptunaCallback("tuning")

    @callback.track_in_safeboard()
    def objective(trial):
        run = callback.run_of(trial)  # the trial's run, started before the objective
        ...

Inside a task run by an agent, ``safeboard.init`` attaches to the task's one run (or the
callback takes it from this process, which already holds it after the script's own
``init()`` or another integration's): there,
each trial logs into it at step = the trial's number (``value``, ``best_value`` and each
numeric parameter as ``param/<name>``), and the task's process ends the run.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import safeboard
from safeboard.sdk.run import Run, Status
from safeboard.sdk.task import task_env

if TYPE_CHECKING:
    import optuna

__all__ = ["SafeboardOptunaCallback"]

T = TypeVar("T")
STATUS_OF_STATE: dict[str, Status] = {"COMPLETE": "finished", "PRUNED": "killed", "FAIL": "failed"}


class SafeboardOptunaCallback:
    """A study callback: ``study.optimize(objective, callbacks=[callback])``.

    ``project``, ``tags`` and any other keyword (``mode``, ``spool_dir``, ``quiet``, ...)
    go to ``safeboard.init`` for each trial's run; ``metric_name`` names the objective
    value(s) (``"value"`` by default)."""

    def __init__(
        self,
        project: str | None = None,
        *,
        metric_name: str | Sequence[str] = "value",
        tags: Mapping[str, str] | None = None,
        **init_kwargs: Any,
    ) -> None:
        self._project = project
        self._metric_name = metric_name
        self._tags = dict(tags or {})
        self._init = init_kwargs
        self._lock = threading.Lock()
        self._open: dict[int, Run] = {}  # trial number -> its run, opened by the decorator
        self._ended: set[int] = set()  # trials whose run the decorator ended (it raised)
        self._task_run: Run | None = None  # inside a task: the task's one run

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._lock:
            run = self._open.pop(trial.number, None)
            if trial.number in self._ended:
                self._ended.discard(trial.number)
                return
        if self._in_task():
            self._log_into_task(study, trial)
            return
        try:
            self._names(len(study.directions))
        except ValueError:
            if run is not None:  # the decorator's run ends here, not at the process's exit
                run.finish("failed")
            raise
        if run is None:
            run = self._start(study, trial)
        else:
            run.log_params(_plain_params(trial.params))
        for step, value in sorted(trial.intermediate_values.items()):
            run.log({"intermediate": value}, step=step)
        values = self._named(trial.values)
        best = _best_value(study)
        if best is not None:
            values["best_value"] = best
        if values:
            run.log(values, step=trial.number)
        state = trial.state.name
        run.set_tags({"optuna_state": state.lower()})
        run.finish(STATUS_OF_STATE.get(state, "failed"))

    def track_in_safeboard(self) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorate the objective: each trial's run starts before the objective, which
        finds it with :meth:`run_of`; a trial that raises ends its run as failed (pruned:
        killed) even when the study does not catch the exception."""

        def decorator(objective: Callable[..., T]) -> Callable[..., T]:
            @functools.wraps(objective)
            def tracked(trial: optuna.trial.Trial, *args: Any, **kwargs: Any) -> T:
                self._names(len(trial.study.directions))  # a wrong metric_name: no run
                run = self._task() if self._in_task() else self._start(trial.study, trial)
                with self._lock:
                    self._open[trial.number] = run
                try:
                    return objective(trial, *args, **kwargs)
                except BaseException as exc:
                    if not self._in_task() and not _pruned(exc):
                        with self._lock:
                            self._open.pop(trial.number, None)
                            self._ended.add(trial.number)
                        run.log_params(_plain_params(trial.params))  # those suggested
                        run.set_tags({"optuna_state": "fail"})
                        run.finish("failed")
                    raise

            return tracked

        return decorator

    def run_of(self, trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> Run:
        """The run of ``trial`` (inside an objective decorated by track_in_safeboard)."""
        with self._lock:
            run = self._open.get(trial.number)
        if run is None:
            raise LookupError(
                f"trial {trial.number} has no run yet: decorate the objective with "
                "@callback.track_in_safeboard()"
            )
        return run

    # -- runs -----------------------------------------------------------------------------

    def _start(
        self, study: optuna.Study, trial: optuna.trial.Trial | optuna.trial.FrozenTrial
    ) -> Run:
        return safeboard.init(
            self._project, name=f"trial-{trial.number}", config=_plain_params(trial.params),
            tags={**self._tags, "study": study.study_name}, **self._init,
        )  # fmt: skip

    def _in_task(self) -> bool:
        return task_env() is not None

    def _task(self) -> Run:
        with self._lock:
            if self._task_run is None:
                self._task_run = safeboard.init(self._project, **self._init)
            return self._task_run

    def _log_into_task(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run = self._task()
        values = self._named(trial.values)
        values.update({
            f"param/{key}": float(value) for key, value in trial.params.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        })  # fmt: skip
        best = _best_value(study)
        if best is not None:
            values["best_value"] = best
        run.log(values, step=trial.number)

    def _names(self, count: int) -> list[str]:
        """The metric names of ``count`` objective values; a ValueError when
        ``metric_name`` names another number of them (checked before a trial's run starts:
        a study that raises leaves no run open)."""
        names = self._metric_name
        if isinstance(names, str):
            return [names] if count == 1 else [f"{names}/{i}" for i in range(count)]
        if len(names) != count:
            raise ValueError(
                f"metric_name names {len(names)} values; the study's objective gives {count}"
            )
        return list(names)

    def _named(self, values: Sequence[float] | None) -> dict[str, float]:
        if not values:
            return {}
        names = self._names(len(values))
        return {name: float(value) for name, value in zip(names, values, strict=True)}


def _plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's parameters as config: numbers, strings and booleans as they are; any other
    categorical choice (None included) as its repr."""
    return {
        key: value if isinstance(value, bool | int | float | str) else repr(value)
        for key, value in params.items()
    }


def _best_value(study: optuna.Study) -> float | None:
    """The study's best value so far; None for several objectives or no complete trial."""
    if len(study.directions) != 1:
        return None
    try:
        return float(study.best_value)
    except ValueError:  # no complete trial yet
        return None


def _pruned(exc: BaseException) -> bool:
    import optuna  # noqa: PLC0415  (the objective runs under optuna: already imported)

    return isinstance(exc, optuna.TrialPruned)
