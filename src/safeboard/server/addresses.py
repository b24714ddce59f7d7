"""This machine's own network addresses, for the names of a generated certificate (S10).

A server bound to every interface (``0.0.0.0`` or ``::``) is reached by teammates at one of
the machine's addresses, so its certificate must name them. Three sources, each allowed to
fail on its own, because none sees everything everywhere: the host name resolved by the
system (``/etc/hosts``, DNS), the source address the kernel picks for a route off the
machine (a UDP ``connect`` sends no packet), and on Linux every interface's addresses
(``SIOCGIFADDR`` for IPv4, ``/proc/net/if_inet6`` for IPv6). Loopback, link-local,
multicast and unspecified addresses are left out: they name no machine to a teammate.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["machine_addresses", "usable_address"]

# Documentation prefixes (RFC 5737, RFC 3849): a UDP connect to them picks a route, sends nothing.
_ROUTE_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))
_SIOCGIFADDR = 0x8915
_IF_INET6 = Path("/proc/net/if_inet6")


def usable_address(text: str) -> str | None:
    """``text`` in canonical form if a teammate could reach this machine at it, else None."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    unusable = (
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_unspecified,
        address.is_reserved,
    )
    return None if any(unusable) else str(address)


def machine_addresses() -> list[str]:
    """The machine's usable addresses, IPv4 first, each once, in a stable order."""
    found = {usable_address(text) for text in _candidates()}
    addresses = [ipaddress.ip_address(text) for text in found if text is not None]
    return [str(a) for a in sorted(addresses, key=lambda a: (a.version, a.packed))]


def _candidates() -> Iterator[str]:
    yield from _resolved({socket.gethostname(), socket.getfqdn()})
    yield from _routed()
    if sys.platform.startswith("linux"):
        yield from _linux_ipv4()
        yield from _linux_ipv6()


def _resolved(names: Iterable[str]) -> Iterator[str]:
    for name in names:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        yield from (str(info[4][0]) for info in infos)


def _routed() -> Iterator[str]:
    for family, target in _ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))
                yield str(probe.getsockname()[0])
        except OSError:
            continue


def _linux_ipv4() -> Iterator[str]:
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in interfaces:
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):  # no IPv4 address on this interface
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                yield socket.inet_ntoa(reply[20:24])


def _linux_ipv6() -> Iterator[str]:
    try:
        lines = _IF_INET6.read_text(encoding="ascii").splitlines()
    except OSError:
        return
    for line in lines:
        digits = line.split()[0] if line.strip() else ""
        if len(digits) == 32:
            yield str(ipaddress.IPv6Address(bytes.fromhex(digits)))
