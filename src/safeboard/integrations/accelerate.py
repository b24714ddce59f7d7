"""``SafeboardTracker`` for Hugging Face Accelerate::

    from safeboard.integrations.accelerate import SafeboardTracker

    accelerator = Accelerator(log_with=[SafeboardTracker("mnist")])

or by name::

    from safeboard.integrations import accelerate as safeboard_accelerate

    safeboard_accelerate.register()  # before creating the Accelerator
    accelerator = Accelerator(log_with="safeboard")
"""

from __future__ import annotations

from typing import Any

__all__ = ["SafeboardTracker", "register"]


def register() -> None:
    """Make ``log_with="safeboard"`` name the tracker (accelerate's
    ``register_tracker_class``; older releases lack it: pass an instance there)."""
    from accelerate import tracking  # noqa: PLC0415  (the framework, on first use)

    from safeboard.integrations._accelerate_tracker import tracker_class  # noqa: PLC0415

    register_class = getattr(tracking, "register_tracker_class", None)
    if register_class is None:
        raise RuntimeError(
            "this accelerate has no register_tracker_class: pass the tracker itself, "
            "Accelerator(log_with=[SafeboardTracker(...)])"
        )
    register_class(tracker_class())


def __getattr__(name: str) -> Any:
    # Built on first use: importing this module does not import accelerate.
    if name == "SafeboardTracker":
        from safeboard.integrations._accelerate_tracker import tracker_class  # noqa: PLC0415

        return tracker_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
