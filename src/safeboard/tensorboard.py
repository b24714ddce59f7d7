"""``safeboard.tensorboard.SummaryWriter``: a drop-in for
``torch.utils.tensorboard.SummaryWriter`` that logs to safeboard (no torch needed).

Switching is an import change::

    # from torch.utils.tensorboard import SummaryWriter
    from safeboard.tensorboard import SummaryWriter

    writer = SummaryWriter(comment="lr0.1")          # project from log_dir or "tensorboard"
    writer.add_scalar("loss/train", loss, step)
    writer.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safeboard.sdk.run import Run, init

__all__ = ["SummaryWriter"]


def _number(value: Any) -> float:
    """Plain numbers, numpy scalars and 0-d tensors (anything with .item())."""
    item = getattr(value, "item", None)
    return float(item() if callable(item) else value)


class SummaryWriter:
    def __init__(
        self,
        log_dir: str | Path | None = None,
        comment: str = "",
        *,
        project: str | None = None,
        run: Run | None = None,
        **_: Any,  # purge_step, max_queue, flush_secs, filename_suffix: meaningless here
    ) -> None:
        name = Path(log_dir).name if log_dir else None
        if comment:
            name = f"{name or 'run'}{comment}"
        self.run = run or init(project or "tensorboard", name=name)
        self._own = run is None
        self._text: dict[str, str] = {}

    def add_scalar(
        self, tag: str, scalar_value: Any, global_step: int | None = None,
        walltime: float | None = None, **_: Any,
    ) -> None:  # fmt: skip
        del walltime  # the server records when points arrive in batches; steps order them
        self.run.log({tag: _number(scalar_value)}, step=global_step)

    def add_scalars(
        self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        del walltime
        values = {f"{main_tag}/{tag}": _number(v) for tag, v in tag_scalar_dict.items()}
        self.run.log(values, step=global_step)

    def add_text(
        self, tag: str, text_string: str, global_step: int | None = None, **_: Any
    ) -> None:
        """Texts become the run's notes (one section per tag, the latest text wins)."""
        del global_step
        self._text[tag] = text_string
        notes = "\n\n".join(f"## {t}\n{body}" for t, body in self._text.items())
        self.run.set_notes(notes)

    def add_hparams(
        self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any], **_: Any
    ) -> None:
        """Hyperparameters join the run's config; their metrics are logged at step 0."""
        self.run.log_params(dict(hparam_dict))
        self.run.log({k: _number(v) for k, v in metric_dict.items()}, step=0)

    def flush(self) -> None:
        self.run.flush()

    def close(self) -> None:
        if self._own:
            self.run.finish()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
