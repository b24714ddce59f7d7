"""safeboard: self-hosted experiment tracking, secure by default.

The SDK::

    import safeboard

    run = safeboard.init(project="mnist", config={"lr": 0.01})
    for step in range(1000):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()

Errors (``safeboard.SafeboardError`` and below, docs/sdk.md) name their fix::

    try:
        run = safeboard.init(project="mnist")
    except safeboard.AuthenticationError as exc:  # InvalidApiKey, ApiKeyRevoked, ApiKeyExpired
        ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public exceptions: the classes of safeboard.errors and safeboard.client, under the
# names an httpx or requests user expects. Each maps to one error code (STATUS_BY_CODE).
_ERRORS = {
    "SafeboardError": ("safeboard.errors", "SafeboardError"),
    "ConfigError": ("safeboard.errors", "ConfigError"),
    "InvalidUrl": ("safeboard.errors", "InvalidUrl"),
    "WrongScheme": ("safeboard.errors", "WrongScheme"),
    "PlainHttpRefused": ("safeboard.client.cleartext", "PlainHttpRefused"),
    "UntrustedCertificate": ("safeboard.client.trust", "UntrustedCertificate"),
    "CertificateChanged": ("safeboard.client.trust", "CertificateChanged"),
    "AuthenticationError": ("safeboard.errors", "Unauthenticated"),
    "InvalidApiKey": ("safeboard.errors", "InvalidApiKey"),
    "ApiKeyRevoked": ("safeboard.errors", "ApiKeyRevoked"),
    "ApiKeyExpired": ("safeboard.errors", "ApiKeyExpired"),
    "PermissionDenied": ("safeboard.errors", "Forbidden"),
    "InsufficientScope": ("safeboard.errors", "InsufficientScope"),
    "InsufficientRole": ("safeboard.errors", "InsufficientRole"),
    "KeyBoundToProject": ("safeboard.errors", "KeyBoundToProject"),
    "NotFound": ("safeboard.errors", "NotFound"),
    "ProjectNotFound": ("safeboard.errors", "ProjectNotFound"),
    "InvalidRequest": ("safeboard.errors", "InvalidRequest"),
    "ServerUnavailable": ("safeboard.errors", "ServiceUnavailable"),
}

__all__ = [
    "ApiKeyExpired",
    "ApiKeyRevoked",
    "AuthenticationError",
    "CertificateChanged",
    "ConfigError",
    "InsufficientRole",
    "InsufficientScope",
    "InvalidApiKey",
    "InvalidRequest",
    "InvalidUrl",
    "KeyBoundToProject",
    "NotFound",
    "PermissionDenied",
    "PlainHttpRefused",
    "ProjectNotFound",
    "Run",
    "SafeboardError",
    "ServerUnavailable",
    "UntrustedCertificate",
    "WrongScheme",
    "__version__",
    "download_artifact",
    "init",
    "submit",
]

if TYPE_CHECKING:
    from safeboard.client.cleartext import PlainHttpRefused
    from safeboard.client.trust import CertificateChanged, UntrustedCertificate
    from safeboard.errors import (
        ApiKeyExpired,
        ApiKeyRevoked,
        ConfigError,
        InsufficientRole,
        InsufficientScope,
        InvalidApiKey,
        InvalidRequest,
        InvalidUrl,
        KeyBoundToProject,
        NotFound,
        ProjectNotFound,
        SafeboardError,
        WrongScheme,
    )
    from safeboard.errors import Forbidden as PermissionDenied
    from safeboard.errors import ServiceUnavailable as ServerUnavailable
    from safeboard.errors import Unauthenticated as AuthenticationError
    from safeboard.sdk.artifacts import download_artifact
    from safeboard.sdk.run import Run, init
    from safeboard.sdk.tasks import submit


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `import safeboard` (and the CLI) stay light.
    if name in ("Run", "init"):
        from safeboard.sdk import run  # noqa: PLC0415  (deferred on purpose)

        return getattr(run, name)
    if name == "download_artifact":
        from safeboard.sdk import artifacts  # noqa: PLC0415  (deferred on purpose)

        return artifacts.download_artifact
    if name == "submit":
        from safeboard.sdk import tasks  # noqa: PLC0415  (deferred on purpose)

        return tasks.submit
    if name in _ERRORS:
        import importlib  # noqa: PLC0415  (deferred on purpose)

        module, attribute = _ERRORS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'safeboard' has no attribute {name!r}")
