"""TLS and exposure as an auditor reads them: the certificate's expiry and names against
the addresses people use, the protocol profile, HSTS, and who can reach the server."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509

from safeboard.doctor.findings import Finding, Severity
from safeboard.server.certificates import LEAF_CERT, RENEW_BEFORE, TLS_DIR, cert_names
from safeboard.settings import Settings, is_wildcard_host

__all__ = ["network_checks"]

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def network_checks(settings: Settings, now: datetime | None = None) -> Iterator[Finding]:
    now = now or datetime.now(UTC)
    yield from _exposure(settings)
    if settings.tls_on:
        yield from _certificate(settings, now)
        if settings.tls.profile == "intermediate":
            yield Finding(
                "tls.profile",
                Severity.INFO,
                "TLS profile intermediate (TLS 1.2 and 1.3): right while some clients lack TLS 1.3",
                'tls.profile = "modern" once every client speaks TLS 1.3',
            )
        yield Finding("tls.hsts", Severity.OK, "HSTS is sent with every answer")
    elif settings.server.behind_proxy:
        yield Finding(
            "tls.hsts",
            Severity.WARNING,
            "TLS ends at the reverse proxy: safeboard sends no HSTS header",
            "make the proxy send Strict-Transport-Security: max-age=31536000",
        )


def _exposure(settings: Settings) -> Iterator[Finding]:
    host = settings.server.host.strip("[]")
    for network in settings.server.behind_proxy:
        parsed = ipaddress.ip_network(str(network))
        if parsed.prefixlen < (24 if parsed.version == 4 else 64):
            yield Finding(
                "exposure.proxy",
                Severity.WARNING,
                f"--behind-proxy {network} trusts X-Forwarded-For from {parsed.num_addresses:,} "
                "addresses: any of them can pose as any client (sign-in throttles, audit)",
                "name only your proxies' addresses, e.g. --behind-proxy 10.0.0.5/32",
            )
    if host in _LOOPBACK:
        yield Finding("exposure.bind", Severity.OK, f"bound to {host}: this machine only")
        return
    where = "every interface" if is_wildcard_host(host) else host
    proxies = ", ".join(map(str, settings.server.behind_proxy))
    if settings.tls_on:
        yield Finding(
            "exposure.bind",
            Severity.INFO,
            f"reachable from the network ({where}, port {settings.port}) over "
            "HTTPS, login required",
        )
    else:
        yield Finding(
            "exposure.bind",
            Severity.WARNING,
            f"plain HTTP on {where}: only the proxy ({proxies}) should reach this port",
            "keep the proxy on this host (bind 127.0.0.1) or firewall the port",
        )


def _certificate(settings: Settings, now: datetime) -> Iterator[Finding]:
    given = settings.tls.cert
    path = given or settings.data_dir / TLS_DIR / LEAF_CERT
    if not path.is_file():
        yield Finding(
            "tls.certificate",
            Severity.INFO,
            "no certificate yet: the server makes one at its start",
        )
        return
    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as exc:
        yield Finding(
            "tls.certificate",
            Severity.ERROR,
            f"{path} cannot be read: {exc}",
            "give a readable PEM chain (--tls-cert), or remove the generated one "
            "to have it made again",
        )
        return
    left = leaf.not_valid_after_utc - now
    renew = (
        "restart the server: it renews its generated certificate"
        if given is None
        else ("renew it with your CA and restart the server")
    )
    if left <= timedelta(0):
        yield Finding(
            "tls.expiry",
            Severity.ERROR,
            f"{path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}",
            renew,
        )
    elif left < RENEW_BEFORE:
        yield Finding(
            "tls.expiry",
            Severity.WARNING,
            f"{path} expires in {left.days} days ({leaf.not_valid_after_utc:%Y-%m-%d})",
            renew,
        )
    else:
        yield Finding("tls.expiry", Severity.OK, f"certificate valid for {left.days} more days")
    yield from _names(settings, leaf)


def _names(settings: Settings, leaf: x509.Certificate) -> Iterator[Finding]:
    held = [name.lower() for name in cert_names(leaf)]
    wanted = [*settings.tls.san]
    host = settings.server.host.strip("[]")
    if not is_wildcard_host(host):
        wanted.append(host)
    if settings.server.public_url:
        wanted.append(urlsplit(settings.server.public_url).hostname or "")
    missing = [name for name in dict.fromkeys(wanted) if name and not _covered(name, held)]
    if missing:
        yield Finding(
            "tls.names",
            Severity.ERROR,
            f"the certificate does not name {', '.join(missing)}: clients there refuse it",
            "add the name (--tls-san NAME; a given certificate: reissue it with that name)",
        )
    else:
        yield Finding("tls.names", Severity.OK, "the certificate names every address in use")


def _covered(name: str, held: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        name = name.lower().rstrip(".")
        return any(
            entry == name
            or (
                entry.startswith("*.")
                and name.count(".") == entry.count(".")
                and name.split(".", 1)[1] == entry[2:]
            )
            for entry in held
        )
    return any(_same_address(address, entry) for entry in held)


def _same_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    try:
        return ipaddress.ip_address(entry) == address
    except ValueError:
        return False
