"""No credential over plain HTTP off this machine (S13).

``require_private_transport(url)`` is the one check: an ``http://`` address is accepted only
for a loopback host (``localhost``, 127.0.0.0/8, ``::1``), where no one on a network can read
what is sent. Every way a credential leaves the client goes through it: ``ApiClient`` (which
carries every API key, session cookie and password the SDK and CLI send), ``ServerAccess``
(so ``safeboard.init()``, ``download_artifact()`` and every CLI command that reads
``SAFEBOARD_URL`` or the stored config refuse before they start), and ``safeboard login``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from safeboard.errors import ConfigError

__all__ = ["PlainHttpRefused", "is_loopback", "require_private_transport"]


class PlainHttpRefused(ConfigError):
    """An ``http://`` address off loopback: nothing was sent. Use ``https://``."""

    code = "plain_http"


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine reaches."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_private_transport(url: str) -> None:
    """Raise ``PlainHttpRefused`` unless ``url`` is ``https://`` or plain HTTP to loopback."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    if is_loopback(host):
        return
    origin = f"{parts.scheme}://{parts.netloc}"
    raise PlainHttpRefused(
        f"{origin} is plain http:// off this machine, so the API key would cross the network "
        f"in clear text; nothing was sent. Use https://{parts.netloc} (safeboard login "
        f"https://{parts.netloc}), or http:// only for a server on this machine (127.0.0.1)"
    )
