"""``SafeboardLogger`` for ``lightning`` (``import lightning.pytorch as pl``)::

    from safeboard.integrations.lightning import SafeboardLogger

    trainer = pl.Trainer(logger=SafeboardLogger(project="mnist", log_model=True))

With the older ``pytorch_lightning`` package, import it from
``safeboard.integrations.pytorch_lightning`` instead (docs/integrations.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SafeboardLogger"]  # noqa: F822  (made by __getattr__, on first use)


def __getattr__(name: str) -> Any:
    # Built on first use: importing this module does not import lightning.
    if name == "SafeboardLogger":
        from safeboard.integrations._lightning_logger import logger_class  # noqa: PLC0415

        return logger_class("lightning.pytorch")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
