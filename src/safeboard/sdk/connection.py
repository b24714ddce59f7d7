"""A run's way to the server: the typed client (``safeboard.client.Client``) made from the
resolved ``ServerAccess``, and made again with a fresh key when the local server's
discovery file holds a new one (its previous key was replaced: revoked by hand, or past
half its life at a restart)."""

from __future__ import annotations

import threading

import httpx

from safeboard.client.credentials import ServerAccess
from safeboard.client.retry import NO_RETRY
from safeboard.client.typed import Client

__all__ = ["Connection"]


class Connection:
    """``connection.client()`` for each new client; ``renewed()`` after a 401."""

    def __init__(self, access: ServerAccess, transport: httpx.BaseTransport | None = None) -> None:
        self._access = access
        self._transport = transport  # tests: the in-process app
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._access.url

    def client(self) -> Client:
        """A new client. The SDK retries through its spool (sender, uploader), so the
        client itself does not."""
        with self._lock:
            access = self._access
        return Client(access.client(transport=self._transport), retry=NO_RETRY)

    def renewed(self) -> bool:
        """Re-read the discovery file when the key came from it; True when it now holds
        another key, which the next ``client()`` uses."""
        with self._lock:
            fresh = self._access.reloaded()
            if fresh is None:
                return False
            self._access = fresh
            return True
