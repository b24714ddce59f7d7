"""Whether anything accepts a connection at a server's address: one connect, nothing sent.

The SDK asks this while its server is away, before it tries a delivery (``sdk/sender.py``).
A delivery that fails to connect runs about a millisecond of Python (the request, the
connection pool, the error's translation) and takes the interpreter lock back after each
of its system calls; each such moment could stop the training loop in the thread beside
it for a millisecond or more (issue 13). The C probe (``_writes.connects``) resolves,
connects and closes with the lock let go once; without the C module Python's own calls do
the same, taking the lock back after each.
"""

from __future__ import annotations

import socket

from safeboard.client import config
from safeboard.hosts import NotAnOrigin, parse_origin

__all__ = ["Address", "address_of", "listening"]

Address = str | tuple[str, int]
"""A Unix socket's path, or a (host, port) pair."""


def address_of(url: str) -> tuple[str, int] | None:
    """The (host, port) a server URL connects to; None when ``url`` is no origin."""
    try:
        origin = parse_origin(url)
    except NotAnOrigin:
        return None
    host = origin.host.strip("[]")  # an IPv6 address is bracketed in a URL, not in a lookup
    return host, origin.effective_port


def listening(address: Address, timeout: float) -> bool:
    """True when something accepts a connection at ``address`` within ``timeout`` seconds."""
    writes = config.WRITES  # read at each call: a test sets it to None
    if writes is not None:
        return bool(writes.connects(address, timeout) == 0)
    try:
        if isinstance(address, tuple):
            socket.create_connection(address, timeout=timeout).close()
        else:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
    except OSError:
        return False
    return True
