"""What a bind address or host name says about who can reach it."""

from __future__ import annotations

import ipaddress

__all__ = ["WILDCARD_HOSTS", "is_loopback_host", "is_wildcard_host"]


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
