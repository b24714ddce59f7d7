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

__all__ = ["SafeboardTracker", "register"]  # noqa: F822  (made by __getattr__, on first use)


def register() -> None:
    """Make ``log_with="safeboard"`` name the tracker (accelerate's
    ``register_tracker_class``; older releases lack it: pass an instance there)."""
    import importlib  # noqa: PLC0415  (rarely used)

    from safeboard.integrations._accelerate_tracker import tracker_class  # noqa: PLC0415

    made = tracker_class()  # says what to install when accelerate is missing
    tracking = importlib.import_module("accelerate.tracking")
    register_class = getattr(tracking, "register_tracker_class", None)
    if register_class is None:
        raise RuntimeError(
            "this accelerate has no register_tracker_class: pass the tracker itself, "
            "Accelerator(log_with=[SafeboardTracker(...)])"
        )
    register_class(made)


def __getattr__(name: str) -> Any:
    # Built on first use: importing this module does not import accelerate.
    if name == "SafeboardTracker":
        from safeboard.integrations._accelerate_tracker import tracker_class  # noqa: PLC0415

        return tracker_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
