"""What a bind address or host name says about who can reach it, and what an origin
(``https://host:port``, the address of a server) may hold: the one reading used by the
server's ``public_url`` setting and by every client's server address."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "WILDCARD_HOSTS", "NotAnOrigin", "Origin", "is_loopback_host", "is_wildcard_host",
    "parse_origin",
]  # fmt: skip


def is_loopback_host(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  (names of the bind, not a bind)


def is_wildcard_host(host: str) -> bool:
    """True for a bind on every interface (which names no address of its own)."""
    return host in WILDCARD_HOSTS


class Origin(NamedTuple):
    scheme: str  # "http" or "https"
    host: str  # lower case; an IPv6 address in brackets
    port: int | None  # as given; None when the scheme's default is meant

    @property
    def effective_port(self) -> int:
        """The port connected to: the one given, or the scheme's default (80, 443)."""
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)


class NotAnOrigin(ValueError):
    """Why a text is not an origin, worded to follow the text (``"... has a path (/x)"``).
    ``secret`` is True when the text holds a user or password, so it is not repeated."""

    def __init__(self, problem: str, *, secret: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.secret = secret


def parse_origin(url: str) -> Origin:
    """``url`` read as an http(s) origin: a host name and maybe a port, no user, path, query
    or fragment; NotAnOrigin says what else it holds."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise NotAnOrigin("is not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise NotAnOrigin("must start with https:// or http://")
    if parts.username is not None or parts.password is not None:
        raise NotAnOrigin("holds a user or password: give no user or password", secret=True)
    if not parts.hostname:
        raise NotAnOrigin("needs a host name")
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise NotAnOrigin("has a query or fragment: the server is served at the root")
    if parts.path not in ("", "/"):
        raise NotAnOrigin(f"has a path ({parts.path[:60]}): the server is served at the root")
    host = parts.hostname.lower()
    if re.search(r"[\s\\<>\"'`]", url) or not re.fullmatch(r"[a-z0-9._-]+|[0-9a-f:.]+", host):
        raise NotAnOrigin("holds characters a host name cannot")
    return Origin(parts.scheme.lower(), f"[{host}]" if ":" in host else host, port)
