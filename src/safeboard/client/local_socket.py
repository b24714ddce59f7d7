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

__all__ = ["LocalServerDown", "LocalSocketTransport"]


class LocalServerDown(httpx.ConnectError):
    """Nothing answers on the local server's socket: the server is not running. Says so,
    with the socket's path and the fix, instead of the socket's own "no such file or
    directory" (or "connection refused")."""

    def __init__(self, path: Path, request: httpx.Request) -> None:
        super().__init__(
            f"the local server is not running (nothing listens on its socket, {path}): "
            "start it with `safeboard server`",
            request=request,
        )


class LocalSocketTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` over the Unix socket at ``path``, however long the path.
    ``plain``: the socket is the TLS server's plain one (``plain.sock``): an ``https://``
    request goes through it as plain HTTP, its URL and Host header unchanged otherwise."""

    def __init__(self, path: Path, *, plain: bool = False, **kwargs: object) -> None:
        self.plain = plain
        self._address = SocketAddress(path)
        try:
            super().__init__(uds=self._address.address, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            self._address.close()
            raise

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._address.path.exists():  # said at once (httpcore would leak a socket)
            raise LocalServerDown(self._address.path, request)
        sent = request
        if self.plain and request.url.scheme == "https":  # the caller's request keeps its URL
            sent = httpx.Request(
                request.method, request.url.copy_with(scheme="http"), headers=request.headers,
                stream=request.stream, extensions=request.extensions,
            )  # fmt: skip
        try:
            return super().handle_request(sent)
        except httpx.ConnectError as exc:
            if _nobody_listens(exc) or not self._address.path.exists():
                raise LocalServerDown(self._address.path, request) from exc
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._address.close()


def _nobody_listens(exc: BaseException) -> bool:
    """No socket file, or one left by a server that is gone."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (FileNotFoundError, ConnectionRefusedError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
