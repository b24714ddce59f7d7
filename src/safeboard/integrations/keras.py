"""Keras 3 (any backend): ``model.fit(..., callbacks=[SafeboardCallback(project="mnist")])``.

What it logs (docs/integrations.md, "Keras"): the epoch's ``logs`` (loss, metrics,
``val_*``) at step = epoch; with ``log_every_n_steps=N`` the batch logs every N batches
as ``batch/<name>`` at a global batch step; the training's parameters (epochs, steps per
epoch, the optimizer's config, the model's parameter count) in the run's config under
``keras``; with ``log_model=True`` the trained model, saved as a ``.keras`` file, as a
``model`` artifact.

The run: the one passed as ``run=``, or one it starts with ``safeboard.init`` (inside a
task run by an agent, that attaches to the task's run, or takes the task's run this
process already holds). A run it started, it finishes when
training ends; when ``fit`` raises, Keras calls no callback, so the run is marked failed by
the ``with`` block (``with SafeboardCallback(...) as callback: model.fit(...)``), or at the
process's exit (a training begun and never ended). Only process 0 logs (JAX's
``process_index``, torch.distributed's rank): the others do nothing.

Batch logging keeps Keras's asynchronous dispatch (``async_safe``): the callback only
appends to the run's queue, in Keras's callback thread, never holding the training step.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import keras
except ImportError as exc:
    raise ImportError(
        "safeboard.integrations.keras needs Keras 3: pip install 'safeboard[keras]'"
    ) from exc

import safeboard
from safeboard.sdk import notices
from safeboard.sdk.run import Run, Status
from safeboard.sdk.task import task_env

__all__ = ["SafeboardCallback"]

_unended: weakref.WeakSet[SafeboardCallback] = weakref.WeakSet()


class SafeboardCallback(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is untyped
    """Log a Keras training to safeboard.

    ``project``, ``name``, ``config``, ``tags`` and any other keyword (``mode``,
    ``spool_dir``, ``quiet``, ...) go to ``safeboard.init`` at the start of training;
    ``run=`` logs to an existing run instead (left open: its owner finishes it)."""

    async_safe = True  # run.log appends to a deque: safe from Keras's dispatch thread

    def __init__(
        self,
        project: str | None = None,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | list[str] | None = None,
        run: Run | None = None,
        log_every_n_steps: int | None = None,
        log_model: bool = False,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError("log_every_n_steps: a positive number of batches, or None")
        self._init = {"project": project, "name": name, "config": config, "tags": tags,
                      **init_kwargs}  # fmt: skip
        self.run: Run | None = run
        self._owned = False  # whether this callback started self.run (then it finishes it)
        self._ended = False  # whether it finished it: the next fit() starts another
        self._every = log_every_n_steps
        self._log_model = log_model
        self._steps = 0  # batches per epoch, from Keras's params (0: unknown)
        self._offset = 0  # the global batch step of this epoch's first batch
        self._seen = 0  # batches seen in this epoch (counts them when steps are unknown)
        self._training = False
        if log_every_n_steps is None:
            # Keras's own no-op: it then keeps dispatching batch ends asynchronously and
            # calls nothing here for them.
            self.on_train_batch_end = super().on_train_batch_end  # type: ignore[method-assign]

    # -- the training's life ------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not _process_zero():
            return
        if self._training:  # the last fit raised (Keras called no end): its run failed
            self.finish("failed")
        if self.run is None or self._ended:
            self.run = safeboard.init(**self._init)  # in a task: the run it holds
            self._owned, self._ended = True, False
        self._training = True
        self._offset = self._seen = 0
        _unended.add(self)
        _hook_exit()
        self.run.log_params({"keras": self._parameters()})

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._steps:  # also right for fit(initial_epoch=...)
            self._offset = epoch * self._steps
        self._seen = 0

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Keras has run every batch end of the epoch by now (it waits for its dispatch).
        self._offset += self._seen
        if self.run is not None and self._training:
            self.run.log(_numbers(logs, ""), step=epoch)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # In Keras's dispatch threads, maybe several at once: the step comes from the batch
        # index alone, never from a counter this method keeps.
        self._seen = max(self._seen, batch + 1)
        run, every = self.run, self._every
        if run is None or not self._training or every is None or (batch + 1) % every:
            return
        run.log(_numbers(logs, "batch/"), step=self._offset + batch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is None or not self._training:
            return
        self._training = False
        _unended.discard(self)
        if self._log_model:
            self._store_model()
        self.finish("finished")

    # -- a training that raised -----------------------------------------------------------

    def __enter__(self) -> SafeboardCallback:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.finish("finished")
        else:
            self.finish("killed" if issubclass(kind, KeyboardInterrupt) else "failed")

    def finish(self, status: Status = "finished") -> None:
        """End the run this callback started (``failed`` after a training that raised).
        A run passed as ``run=``, or a task's run, is left to its owner."""
        self._training = False
        _unended.discard(self)
        if self.run is not None and self._owned and not self._ended and not _is_task_run(self.run):
            self._ended = True
            self.run.finish(status)

    # -- what the training is -------------------------------------------------------------

    def _parameters(self) -> dict[str, Any]:
        params = dict(self.params or {})
        steps = params.get("steps")
        self._steps = steps if isinstance(steps, int) else 0
        found: dict[str, Any] = {"epochs": params.get("epochs"), "steps_per_epoch": steps}
        model = self.model
        if model is not None:
            found["model"] = str(getattr(model, "name", type(model).__name__))
            with contextlib.suppress(ValueError):  # a model not built yet has no count
                found["parameters"] = int(model.count_params())
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                # Keras 3.15 reads the learning rate through a numpy __array__ that warns.
                with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
                    found["optimizer"] = _plain(optimizer.get_config())
        return {key: value for key, value in found.items() if value is not None}

    def _store_model(self) -> None:
        if self.run is None:
            return
        # A file in the run's spool (never a folder: the spool holds files alone): read when
        # uploaded, removed with the spool once delivered, kept there for `safeboard sync`
        # while the run is offline.
        name = _safe(str(getattr(self.model, "name", "model")))
        path = Path(self.run.spool.path) / f"model-{name}.keras"
        try:
            with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
                self.model.save(path)  # the same numpy warning as get_config()
        except Exception as exc:  # noqa: BLE001  (a model Keras cannot save ends no training)
            notices.say(f"run {self.run.id}: the model is not stored: {exc}")
            return
        self.run.log_artifact(path, name=f"{name}.keras", kind="model")


def _is_task_run(run: Run) -> bool:
    """Whether ``run`` is a task's run (attached by init() inside a task): the task's
    process ends it, and a script may log to it after fit()."""
    return task_env() is not None and run.id == os.environ.get("SAFEBOARD_RUN_ID")


def _process_zero() -> bool:
    """Whether this process is the one that logs: JAX's process 0, torch.distributed's
    rank 0, else (one process) yes. The backend's module is already imported by Keras."""
    backend = keras.backend.backend()
    jax = sys.modules.get("jax")
    if backend == "jax" and jax is not None:
        return bool(jax.process_index() == 0)
    dist = sys.modules.get("torch.distributed")
    if backend == "torch" and dist is not None and dist.is_available() and dist.is_initialized():
        return bool(dist.get_rank() == 0)
    return True


def _numbers(logs: Mapping[str, Any] | None, prefix: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            values[prefix + str(key)] = float(value)
        except (TypeError, ValueError):  # a non-scalar value: not a metric
            continue
    return values


def _plain(value: Any) -> Any:
    """``value`` as JSON: numbers, strings, lists and objects; anything else as its repr."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    try:
        return _plain(float(value))
    except (TypeError, ValueError):
        return repr(value)[:200]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "model"


_hooked: list[bool] = []


def _hook_exit() -> None:
    """At exit, a training begun and never ended (``fit`` raised, and the script went on)
    marks its run failed. Registered after init()'s own hook, so it runs first."""
    if not _hooked:
        _hooked.append(True)
        atexit.register(_fail_unended)


def _fail_unended() -> None:
    for callback in list(_unended):
        callback.finish("failed")
