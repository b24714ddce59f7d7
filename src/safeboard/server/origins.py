"""Two origins on one server: the main application, and TensorBoard's own origin on a
second listener (same address and scheme, another port, so another origin:
docs/security.md, "TensorBoard's origin").

The listener a request came in on decides (``scope["server"]``, the socket's own address,
never a header): TensorBoard's application sees only the requests of its port, and the
main application never sees them.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from safeboard.server.bootstrap import advertised_url
from safeboard.settings import Settings
from safeboard.tensorboards.proxy import ROOT_FONTS
from safeboard.tensorboards.supervisor import extra_installed

__all__ = [
    "Origins", "SameOrigin", "TensorboardListener", "open_tensorboard_listener",
    "same_origin_tensorboard",
]  # fmt: skip

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TensorboardListener:
    sock: socket.socket
    port: int
    origin: str  # e.g. https://127.0.0.1:40123


def open_tensorboard_listener(
    settings: Settings, bind: Callable[[str, int], socket.socket]
) -> TensorboardListener | None:
    """TensorBoard's listener, when it is on and the extra is installed (None otherwise,
    and in the same-origin mode: ``SameOrigin`` then serves it under ``/tb/``)."""
    if not settings.tensorboard.enabled or not extra_installed():
        return None
    if settings.tensorboard.same_origin:
        return None
    sock = bind(settings.server.host, settings.tensorboard.port)
    # Listening now: a link printed before the server serves is not refused, it waits.
    sock.listen(2048)
    port = int(sock.getsockname()[1])
    # The machine's name on a bind to every interface (in the certificate's names), so
    # that a link printed on a shared box opens from another machine; else the address.
    parts = urlsplit(advertised_url(settings, public=False))
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return TensorboardListener(sock, port, f"{parts.scheme}://{host}:{port}")


def same_origin_tensorboard(settings: Settings) -> bool:
    """Whether TensorBoard is served under ``/tb/`` of the main origin."""
    board = settings.tensorboard
    return board.enabled and board.same_origin and extra_installed()


class Origins:
    """Sends each request to the application of the listener it arrived on."""

    def __init__(self, main: App, tensorboard: App, tensorboard_port: int) -> None:
        self.main = main
        self.tensorboard = tensorboard
        self.port = tensorboard_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.port:
            await self.tensorboard(scope, receive, send)
        else:
            await self.main(scope, receive, send)


class SameOrigin:
    """``tensorboard.same_origin``: one listener, TensorBoard's application answering the
    paths under ``/tb/`` (its instances and its entry page, ``/tb/enter``) and its fonts
    (asked for at the root, ``/font-roboto/``), the main application every other path.
    Safeboard's headers (its CSP) are the main application's: they stay on its pages,
    TensorBoard's weaker ones on TensorBoard's paths only."""

    def __init__(self, main: App, tensorboard: App) -> None:
        self.main = main
        self.tensorboard = tensorboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")  # none in a lifespan scope
        if scope["type"] == "http" and (
            (path + "/").startswith("/tb/") or path.startswith(ROOT_FONTS)
        ):
            await self.tensorboard(scope, receive, send)
        else:
            await self.main(scope, receive, send)
