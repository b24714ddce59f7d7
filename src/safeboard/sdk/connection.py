"""A run's way to the server: the typed client (``safeboard.client.Client``) made from the
resolved ``ServerAccess``, and made again with a fresh key when the local server's
discovery file holds a new one (its previous key was replaced: revoked by hand, or past
half its life at a restart)."""

from __future__ import annotations

import threading

import httpx

from safeboard.client import reach
from safeboard.client.credentials import ServerAccess
from safeboard.client.retry import NO_RETRY
from safeboard.client.typed import Client
from safeboard.datadir import SocketAddress
from safeboard.errors import ConfigError

__all__ = ["PROBE_SECONDS", "Connection"]

PROBE_SECONDS = 5.0  # as long as a delivery's own connect may take (sdk/delivery.py)


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

    def listening(self) -> bool:
        """Whether anything accepts a connection at the server's address now (its local
        socket, or its host and port): one connect, nothing sent, asked by the sender
        before a delivery while the server is away (``client/reach.py``). True when
        there is nothing to probe (the tests' in-process app, a URL that is no origin):
        the delivery itself finds out."""
        with self._lock:
            access = self._access
        if self._transport is not None:
            return True
        if access.local_socket is not None:
            try:
                socket_address = SocketAddress(access.local_socket)
            except (ConfigError, OSError):  # too long a path here, or its directory gone
                return True
            try:
                return reach.listening(socket_address.address, PROBE_SECONDS)
            finally:
                socket_address.close()
        address = reach.address_of(access.url)
        return address is None or reach.listening(address, PROBE_SECONDS)
