"""The Lightning logger, built once per package: ``lightning.pytorch`` and the older
``pytorch_lightning`` each check that a logger subclasses their own ``Logger``, so
lightning.py and pytorch_lightning.py each ask for the class on their base (Aim's adapter
does the same). The framework is imported here, on first use, never at import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from safeboard.integrations._hookup import (
    framework,
    metrics_of,
    start_run,
    store_copy,
    store_params,
)
from safeboard.sdk import notices
from safeboard.sdk.run import Run

__all__ = ["logger_class"]

LogModel = bool | Literal["all"]


@functools.cache
def logger_class(package: str) -> type[Any]:
    """``SafeboardLogger`` on ``<package>.loggers.Logger`` (package: ``lightning.pytorch``
    or ``pytorch_lightning``)."""
    with framework("SafeboardLogger", "lightning"):
        loggers = importlib.import_module(f"{package}.loggers.logger")
        rank_zero = importlib.import_module(f"{package}.utilities.rank_zero")
    rank_zero_only = rank_zero.rank_zero_only
    rank_zero_experiment = loggers.rank_zero_experiment

    class SafeboardLogger(loggers.Logger):  # type: ignore[misc, name-defined]
        """Logs a Lightning ``Trainer``'s metrics and hyperparameters to a safeboard run
        (docs/integrations.md, "PyTorch Lightning")::

            trainer = Trainer(logger=SafeboardLogger(project="mnist"))

        ``run``: log into a run already started (never finished here); otherwise the run
        is started with ``safeboard.init(project, name=name, **init_kwargs)`` on rank 0
        when first needed (inside an agent's task: the task's run). ``log_model``: True
        stores the checkpoints left at the end of fit as artifacts (kind ``model``),
        ``"all"`` each one as it is saved. ``save_dir``: where Lightning puts the
        checkpoints (``<save_dir>/<project>/<run id>/checkpoints``); None: its
        ``default_root_dir``."""

        def __init__(
            self,
            project: str = "lightning",
            name: str | None = None,
            *,
            run: Run | None = None,
            log_model: LogModel = False,
            save_dir: str | None = None,
            prefix: str = "",
            **init_kwargs: Any,
        ) -> None:
            super().__init__()
            self._project = project
            self._run_name = name
            self._given = run
            self._run: Run | None = None
            self._own = False
            self._log_model = log_model
            self._save_dir = save_dir
            self._prefix = prefix
            self._init_kwargs = init_kwargs
            self._stored: dict[str, float] = {}  # checkpoint path -> its mtime when stored
            self._checkpoints: Any = None  # the ModelCheckpoint whose files go at the end

        @property
        @rank_zero_experiment  # type: ignore[untyped-decorator]
        def experiment(self) -> Run:
            """The safeboard run (``logger.experiment.log_image(...)`` and so on)."""
            if self._run is None:
                self._run, self._own = start_run(
                    self._given, self._project, self._run_name, self._init_kwargs
                )
            return self._run

        @property
        def name(self) -> str:
            return self._project if self._given is None else self._given.project

        @property
        def version(self) -> str:
            experiment = self.experiment  # a stand-in on ranks other than 0
            return experiment.id if isinstance(experiment, Run) else ""

        @property
        def save_dir(self) -> str | None:
            return self._save_dir

        @rank_zero_only  # type: ignore[untyped-decorator]
        def log_hyperparams(
            self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any
        ) -> None:
            del args, kwargs  # Lightning's signature; nothing else is passed
            values = vars(params) if isinstance(params, Namespace) else dict(params or {})
            store_params(self.experiment, values, "SafeboardLogger.log_hyperparams")

        @rank_zero_only  # type: ignore[untyped-decorator]
        def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
            values = metrics_of(metrics)
            if self._prefix:
                values = {f"{self._prefix}/{key}": v for key, v in values.items()}
            if values:
                self.experiment.log(values, step=step)

        @rank_zero_only  # type: ignore[untyped-decorator]
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            if self._log_model == "all" or (
                self._log_model is True and checkpoint_callback.save_top_k == -1
            ):
                self._store_checkpoints(checkpoint_callback)
            elif self._log_model is True:
                self._checkpoints = checkpoint_callback

        @rank_zero_only  # type: ignore[untyped-decorator]
        def finalize(self, status: str) -> None:
            """Lightning calls this after each of fit, validate and test ("success") and
            on a failure ("failed"). A failure ends a run started here as ``failed``
            (``killed`` on Ctrl-C); after a success the run stays open, so that a
            ``trainer.test()`` after ``trainer.fit()`` logs into it, and ends
            ``finished`` when the script does (or at :meth:`finish`)."""
            if self._run is None:
                return
            if self._checkpoints is not None:
                self._store_checkpoints(self._checkpoints)
            if status == "failed":
                interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
                self.finish("killed" if interrupted else "failed")

        def finish(self, status: Literal["finished", "failed", "killed"] = "finished") -> None:
            """End the run, if this logger started it (not one given, nor a task's)."""
            if self._run is not None and self._own:
                self._run.finish(status)

        def _store_checkpoints(self, checkpoint_callback: Any) -> None:
            """Each checkpoint file new or changed since last time, as an artifact (a copy:
            Lightning overwrites ``last.ckpt`` and deletes what falls out of its top k)."""
            run = self.experiment
            paths = {str(p) for p in checkpoint_callback.best_k_models}
            for attribute in ("last_model_path", "best_model_path"):
                path = getattr(checkpoint_callback, attribute, "")
                if path:
                    paths.add(str(path))
            for path in sorted(paths):
                source = Path(path)
                with contextlib.suppress(OSError):
                    mtime = source.stat().st_mtime
                    if self._stored.get(path) == mtime:
                        continue
                    store_copy(run, source, f"checkpoints/{source.name}")
                    self._stored[path] = mtime
                    continue
                notices.say(f"SafeboardLogger: checkpoint {path} not stored: unreadable")

    # Named where users import it, so that pickle (a spawned process) finds it again.
    SafeboardLogger.__module__ = "safeboard.integrations." + (
        "lightning" if package == "lightning.pytorch" else "pytorch_lightning"
    )
    SafeboardLogger.__qualname__ = "SafeboardLogger"
    return SafeboardLogger
