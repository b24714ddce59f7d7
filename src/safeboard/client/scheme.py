"""Which scheme a server's port speaks, when a request failed because it was the other one.

``https://`` to a plain-HTTP port fails in the TLS handshake with OpenSSL's "wrong version
number" (the server answered HTTP text where a TLS record was due); ``http://`` to a TLS
port gets a dropped connection or garbage instead of an HTTP response. The second is
confirmed by a TLS handshake with the port that sends nothing else (no request, no
credential) before the client says "use https://".
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import httpx

from safeboard.errors import WrongScheme

__all__ = ["plain_http_port", "wrong_scheme"]

_PROBE_SECONDS = 3.0
# OpenSSL's reasons for "the peer does not speak TLS" (3.0: WRONG_VERSION_NUMBER; 3.2 and
# later: RECORD_LAYER_FAILURE; some peers: UNKNOWN_PROTOCOL, PACKET_LENGTH_TOO_LONG).
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
            "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}  # fmt: skip


def _ssl_reason(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.reason or "")
        seen = seen.__cause__ or seen.__context__
    return None


def _speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes a TLS handshake (nothing is sent after it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only "does it speak TLS": no trust is decided here
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ValueError):
        return False


def plain_http_port(url: str, exc: BaseException) -> WrongScheme | None:
    """``WrongScheme`` saying to use http:// when ``exc`` is a TLS handshake with ``url``
    that a plain-HTTP port answered; None for any other failure. Shared by every request
    (``wrong_scheme``) and by the bare handshakes that judge a certificate before one."""
    parts = urlsplit(url)
    if parts.scheme != "https" or _ssl_reason(exc) not in _NOT_TLS:
        return None
    return WrongScheme(
        f"{url} does not speak TLS: it is a plain-HTTP port; nothing was sent. "
        f"Use http://{parts.netloc} (only for a server on this machine), or the server's TLS "
        "port with https://"
    )


def wrong_scheme(url: str, exc: httpx.TransportError) -> WrongScheme | None:
    """``WrongScheme`` naming the scheme to use when ``exc`` came from using the other one."""
    plain = plain_http_port(url, exc)
    if plain is not None:
        return plain
    parts = urlsplit(url)
    netloc = parts.netloc
    dropped = isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError))
    host, port = parts.hostname, parts.port
    if parts.scheme == "http" and dropped and host and port and _speaks_tls(host, port):
        return WrongScheme(
            f"{url} speaks TLS: use https://{netloc} (safeboard login https://{netloc})"
        )
    return None
