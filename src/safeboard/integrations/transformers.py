"""``SafeboardCallback`` for the Hugging Face ``Trainer``::

    from safeboard.integrations.transformers import SafeboardCallback

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[SafeboardCallback(project="glue")])

``report_to=`` takes only the names transformers knows: pass the callback instead, with
``report_to="none"`` (docs/integrations.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SafeboardCallback"]  # noqa: F822  (made by __getattr__, on first use)


def __getattr__(name: str) -> Any:
    # Built on first use: importing this module does not import transformers.
    if name == "SafeboardCallback":
        from safeboard.integrations._transformers_callback import (  # noqa: PLC0415
            callback_class,
        )

        return callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
