"""The Accelerate ``GeneralTracker``, built on first use so that importing accelerate.py
never imports accelerate."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from safeboard.integrations._hookup import (
    flat_params,
    framework,
    metrics_of,
    start_run,
    store_params,
)
from safeboard.sdk.run import Run

__all__ = ["tracker_class"]


@functools.cache
def tracker_class() -> type[Any]:
    with framework("SafeboardTracker", "accelerate"):
        # By name, so that type checking reads the same with accelerate or without it.
        base: Any = importlib.import_module("accelerate.tracking").GeneralTracker

    class SafeboardTracker(base):  # type: ignore[misc]
        """An Accelerate tracker logging to a safeboard run (docs/integrations.md,
        "Accelerate")::

            accelerator = Accelerator(log_with=[SafeboardTracker("mnist")])
            accelerator.init_trackers("mnist", config={"lr": 0.1})
            accelerator.log({"loss": loss}, step=step)
            accelerator.end_training()

        or by name, after :func:`safeboard.integrations.accelerate.register`:
        ``Accelerator(log_with="safeboard")``, where ``init_trackers``' project name is the
        project. On the main process only. The run is started with
        ``safeboard.init(project, name=run_name, **init_kwargs)`` when the Accelerator
        starts its trackers (inside an agent's task: the task's run), unless ``run`` gives
        one (never finished here); ``end_training()`` finishes a run started here."""

        name = "safeboard"
        requires_logging_directory = False
        main_process_only = True

        def __init__(
            self,
            project: str = "accelerate",
            *,
            run_name: str | None = None,
            run: Run | None = None,
            **init_kwargs: Any,
        ) -> None:
            super().__init__()
            self._project = project
            self._run_name = run_name
            self._given = run
            self._run: Run | None = None
            self._own = False
            self._init_kwargs = init_kwargs

        def start(self) -> None:
            """Start the run (Accelerate calls this on the main process)."""
            _ = self.tracker

        @property
        def tracker(self) -> Run:
            """The safeboard run."""
            if self._run is None:
                self._run, self._own = start_run(
                    self._given, self._project, self._run_name, self._init_kwargs
                )
            return self._run

        def store_init_configuration(self, values: Mapping[str, Any]) -> None:
            store_params(self.tracker, values, "SafeboardTracker")

        def log(self, values: Mapping[str, Any], step: int | None = None, **kwargs: Any) -> None:
            """The numbers of ``values`` at ``step``; nested dicts become ``outer/inner``
            (as TensorBoard's tracker charts them); text is left out."""
            del kwargs  # other trackers' options
            numbers = metrics_of(flat_params(values))
            if numbers:
                self.tracker.log(numbers, step=step)

        def finish(self) -> None:
            if self._run is not None and self._own:
                self._run.finish()
                self._run = None  # a later log starts a new run

    SafeboardTracker.__module__ = (
        "safeboard.integrations.accelerate"  # where users import it (repr, pickle)
    )
    SafeboardTracker.__qualname__ = "SafeboardTracker"
    return SafeboardTracker
