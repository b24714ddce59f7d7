"""What the PyTorch integrations share: the run they log to, and the conversion of a
framework's parameters and metrics into what a run stores.

A run is the one the user hands over (``run=``: never finished by the integration) or one
started with ``safeboard.init``, which inside a task run by an agent attaches to the
task's run (``SAFEBOARD_RUN_ID``, docs/agents.md): an integration needs nothing more to
log into it, and leaves ending it to the task's process. A conversion never raises into
the training loop: a value that cannot be stored is written as text, a metric that is no
number is left out.
"""

from __future__ import annotations

import contextlib
import enum
import math
import numbers
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeboard.documents import MAX_KEY_CHARS, MAX_STRING_CHARS, document_problem
from safeboard.ids import new_id
from safeboard.sdk import notices
from safeboard.sdk.run import Run, init
from safeboard.sdk.task import task_env

__all__ = [
    "flat_params", "framework", "metrics_of", "start_run", "store_copy",
    "store_params",
]  # fmt: skip

SEPARATOR = "/"  # Lightning's separator for nested keys (its _flatten_dict)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")


@contextlib.contextmanager
def framework(what: str, extra: str) -> Iterator[None]:
    """A framework missing says which and how to install it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{what} needs {exc.name}: pip install 'safeboard[{extra}]' (after installing "
            "the torch build you want)",
            name=exc.name,
        ) from None


def start_run(
    run: Run | None, project: str, name: str | None, init_kwargs: Mapping[str, Any]
) -> tuple[Run, bool]:
    """The run to log to, and whether the integration finishes it: one it started, unless
    that is a task's run, which the task's process ends (a script may log after training).
    Inside a task, init() returns the task's run this process holds already (the script's
    own, or another integration's)."""
    if run is not None:
        return run, False
    task = task_env()
    started = init(project, name=name, **init_kwargs)
    return started, task is None or started.id != task.run_id


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim/lr": 0.1}``; values JSON can carry, others as
    text (a dtype, a path, a class), lists of plain values kept as lists."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"[:MAX_KEY_CHARS]
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}{SEPARATOR}"))
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value[:MAX_STRING_CHARS] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
        return list(value)
    item = getattr(value, "item", None)  # a numpy scalar or a 0-d tensor
    if callable(item) and getattr(value, "ndim", 1) == 0:
        try:
            return _plain(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)[:MAX_STRING_CHARS]


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def store_params(run: Run, params: Mapping[str, Any], where: str) -> None:
    """Add ``params`` (flattened) to the run's config; what the config's bounds refuse is
    said once on stderr and left out, never raised into training."""
    flat = flat_params(params)
    problem = document_problem({**run.config, **flat}, "config")
    if problem is not None:
        notices.say(f"{where}: parameters not stored: {problem}")
        return
    run.log_params(flat)


def metrics_of(values: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of ``values`` (ints, floats, numpy scalars, 0-d tensors), as floats;
    text, bools and arrays are left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, numbers.Real):
            out[str(key)] = float(value)
            continue
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "ndim", None) == 0:
            try:
                number = item()
            except (TypeError, ValueError, RuntimeError):
                continue
            if isinstance(number, numbers.Real) and not isinstance(number, bool):
                out[str(key)] = float(number)
    return out


def store_copy(run: Run, source: Path, name: str, step: int | None = None) -> None:
    """Upload a copy of the checkpoint file ``source`` as the model artifact ``name``. The
    frameworks overwrite and delete checkpoints while the upload is still to come, so the
    copy is what is uploaded: it lies in the run's spool (0600, as the drop-in writer's
    files do), deleted with the spool once the run is delivered, or kept there for
    ``safeboard sync``."""
    copy = run.spool.path / f"checkpoint-{new_id()}-{_UNSAFE.sub('_', source.name)[-80:]}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    with source.open("rb") as data, os.fdopen(os.open(copy, flags, 0o600), "wb") as out:
        shutil.copyfileobj(data, out, 1 << 20)
    run.log_artifact(copy, name, "model", step=step)
