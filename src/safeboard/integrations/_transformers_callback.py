"""The Hugging Face ``TrainerCallback``, built on first use so that importing
transformers.py never imports transformers."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safeboard.integrations._hookup import (
    framework,
    metrics_of,
    start_run,
    store_copy,
    store_params,
)
from safeboard.sdk.run import Run

__all__ = ["callback_class"]


@functools.cache
def callback_class() -> type[Any]:
    with framework("SafeboardCallback", "transformers"):
        # By name, so that type checking reads the same with transformers or without it.
        base: Any = importlib.import_module("transformers").TrainerCallback

    class SafeboardCallback(base):  # type: ignore[misc]
        """Logs a ``Trainer``'s arguments, model config and logs to a safeboard run
        (docs/integrations.md, "Hugging Face Transformers")::

            trainer = Trainer(..., callbacks=[SafeboardCallback(project="glue")])

        On the main process only. ``run``: log into a run already started (never finished
        here); otherwise ``safeboard.init(project, name=args.run_name, **init_kwargs)``
        at the start of training (inside an agent's task: the task's run), finished at
        its end (``finish_on_train_end=False`` keeps it open for a later
        ``trainer.evaluate()``; a log after the run finished starts a new one).
        ``log_checkpoints``: each checkpoint the Trainer saves, as artifacts
        ``checkpoint-<step>/<file>`` (kind ``model``)."""

        def __init__(
            self,
            project: str = "transformers",
            *,
            run: Run | None = None,
            log_checkpoints: bool = False,
            finish_on_train_end: bool = True,
            **init_kwargs: Any,
        ) -> None:
            self._project = project
            self._given = run
            self._run: Run | None = None
            self._own = False
            self._log_checkpoints = log_checkpoints
            self._finish_on_train_end = finish_on_train_end
            self._init_kwargs = init_kwargs

        @property
        def run(self) -> Run | None:
            """The run logged to (None before training starts, or off the main process)."""
            return self._run

        def _ensure(self, args: Any) -> Run:
            if self._run is None:
                name = getattr(args, "run_name", None)
                if name == getattr(args, "output_dir", None):
                    name = None  # older versions default it to the output directory
                self._run, self._own = start_run(
                    self._given, self._project, name, self._init_kwargs
                )
            return self._run

        def on_train_begin(
            self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
        ) -> None:
            del control, kwargs  # the Trainer's hook signature
            if not state.is_world_process_zero:
                return
            run = self._ensure(args)
            params: dict[str, Any] = dict(args.to_dict())
            config = getattr(model, "config", None)
            if config is not None and hasattr(config, "to_dict"):
                params["model"] = config.to_dict()
            store_params(run, params, "SafeboardCallback")

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:  # fmt: skip
            del control, kwargs
            if not state.is_world_process_zero:
                return
            values = metrics_of(logs or {})
            if values:
                self._ensure(args).log(values, step=int(state.global_step))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            del control, kwargs
            if not (self._log_checkpoints and state.is_world_process_zero):
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not folder.is_dir():
                return
            run = self._ensure(args)
            # Copies: save_total_limit deletes old checkpoints while uploads wait.
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
                store_copy(run, path, name, step=int(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            del args, control, kwargs
            if state.is_world_process_zero and self._finish_on_train_end:
                self.finish()

        def finish(self) -> None:
            """End the run, if this callback started it (not one given, nor a task's); a
            later log starts a new one."""
            if self._run is not None and self._own:
                self._run.finish()
                self._run = None

    SafeboardCallback.__module__ = (
        "safeboard.integrations.transformers"  # where users import it (repr, pickle)
    )
    SafeboardCallback.__qualname__ = "SafeboardCallback"
    return SafeboardCallback
