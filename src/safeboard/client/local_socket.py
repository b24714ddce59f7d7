"""The transport to the local server's Unix socket (``server.sock`` in its data directory).

The discovery file's key goes only through this socket: it lives in the server's 0700
data directory, so only the server that wrote the discovery file can listen on it, and a
process of another OS user that takes the TCP port while the server is down receives
nothing. The URL keeps its host and port (they name the server in the Host header); only
the connection goes through the socket.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from safeboard.datadir import SocketAddress

__all__ = ["LocalSocketTransport"]


class LocalSocketTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` over the Unix socket at ``path``, however long the path."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        self._address = SocketAddress(path)
        try:
            super().__init__(uds=self._address.address, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            self._address.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._address.close()
