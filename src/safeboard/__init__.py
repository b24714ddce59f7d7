"""safeboard: self-hosted experiment tracking, secure by default.

The SDK::

    import safeboard

    run = safeboard.init(project="mnist", config={"lr": 0.01})
    for step in range(1000):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Run", "__version__", "download_artifact", "init"]

if TYPE_CHECKING:
    from safeboard.sdk.artifacts import download_artifact
    from safeboard.sdk.run import Run, init


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `import safeboard` (and the CLI) stay light.
    if name in ("Run", "init"):
        from safeboard.sdk import run  # noqa: PLC0415  (deferred on purpose)

        return getattr(run, name)
    if name == "download_artifact":
        from safeboard.sdk import artifacts  # noqa: PLC0415  (deferred on purpose)

        return artifacts.download_artifact
    raise AttributeError(f"module 'safeboard' has no attribute {name!r}")
