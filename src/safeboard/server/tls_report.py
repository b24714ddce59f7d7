"""What ``safeboard tls show`` prints: the TLS of the running server, or what a start would give.

A running server is found the way local clients find it: its discovery file in the data
directory, written at start with the certificate files it serves, and its Unix socket
answering. Its flags (``--host 0.0.0.0``, ``--tls-san``, ``--tls-cert``) are not in the
settings file, so only the discovery file says what it really serves.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from safeboard.datadir import LOCAL_SOCKET, SocketAddress
from safeboard.server.certificates import (
    CA_CERT,
    LEAF_CERT,
    RENEW_BEFORE,
    TLS_DIR,
    cert_fingerprint,
    cert_names,
    load_given,
    read_certs,
)
from safeboard.settings import Settings

__all__ = ["RunningServer", "describe_tls", "running_server"]

DISCOVERY_FILE = "discovery.json"  # safeboard.server.bootstrap writes it at each start


@dataclass(frozen=True)
class RunningServer:
    """The server running with a data directory, as its discovery file describes it."""

    url: str
    cert: Path | None  # the chain file it serves; None for plain HTTP
    ca_cert: Path | None  # its generated CA; None for a given certificate


def running_server(data_dir: Path) -> RunningServer | None:
    """The server of ``data_dir`` if one runs (its socket answers) and says how it serves."""
    path = data_dir.expanduser() / LOCAL_SOCKET
    if not path.is_socket():
        return None
    address = SocketAddress(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(address.address) != 0:
                return None
    finally:
        address.close()
    try:
        data = json.loads((data_dir.expanduser() / DISCOVERY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    tls = data.get("tls")
    tls = tls if isinstance(tls, dict) else {}
    cert, ca = tls.get("cert"), tls.get("ca_cert")
    return RunningServer(
        str(data["url"]),
        Path(cert) if isinstance(cert, str) and cert else None,
        Path(ca) if isinstance(ca, str) and ca else None,
    )


def describe_tls(
    settings: Settings, *, running: RunningServer | None = None, now: datetime | None = None
) -> str:
    """Text for ``safeboard tls show``: files, fingerprints, expiry, names, how to trust."""
    now = now or datetime.now(UTC)
    if running is not None:
        return _describe_running(running, now)
    lines = ["No server is running with this data directory; a start with these settings"]
    lines.append("(and no flags) would serve:" if settings.tls_on else "would serve plain HTTP.")
    if not settings.tls_on:
        lines.append("TLS is off in this configuration (it is on with --tls or off loopback).")
    if settings.tls.cert is not None and settings.tls.key is not None:
        cert_path, key_path = settings.tls.cert.expanduser(), settings.tls.key.expanduser()
        return "\n".join(lines + _describe(load_given(cert_path, key_path, now), cert_path, now))
    tls_dir = settings.data_dir.expanduser() / TLS_DIR
    if not (ca_path := tls_dir / CA_CERT).is_file():
        lines.append(f"No certificate generated yet in {tls_dir}: `safeboard server` makes one")
        lines.append("there (a local CA and a server certificate) when it starts with TLS on.")
        return "\n".join(lines)
    ca = read_certs(ca_path, f"delete {tls_dir} to start afresh")[0]
    lines += _describe(ca, ca_path, now)
    if (leaf_path := tls_dir / LEAF_CERT).is_file():
        leaf = read_certs(leaf_path, "delete it to have a new one issued at the next start")[0]
        lines += _describe(leaf, leaf_path, now)
        lines.append(f"  (renewed at start when fewer than {RENEW_BEFORE.days} days remain)")
    return "\n".join(lines) + "\n\n" + _pin_line(ca) + "\n" + _TRUST.format(ca=ca_path)


def _describe_running(running: RunningServer, now: datetime) -> str:
    if running.cert is None:
        return f"The running server on {running.url} serves plain HTTP (TLS is off)."
    lines = [f"The running server on {running.url} serves HTTPS with:"]
    chain = read_certs(running.cert, "restart the server to write it again")
    lines += _describe(chain[0], running.cert, now)
    if running.ca_cert is None:
        lines.append(f"  (given with --tls-cert; {len(chain) - 1} CA certificate(s) follow it)")
        anchor = _anchor(chain)
        kind = "the server certificate" if anchor is chain[0] else "the CA"
        pin = f"Where the system does not trust it, `safeboard login URL` pins {kind}: "
        return "\n".join([*lines, pin + cert_fingerprint(anchor)])
    ca = read_certs(running.ca_cert, "restart the server to make it again")[0]
    lines += _describe(ca, running.ca_cert, now)
    days = RENEW_BEFORE.days
    lines.append(f"  (the server certificate is renewed at start when fewer than {days} days")
    lines.append("  remain or its names change; clients that pinned the CA do not notice)")
    return "\n".join(lines) + "\n\n" + _pin_line(ca) + "\n" + _TRUST.format(ca=running.ca_cert)


def _anchor(chain: list[x509.Certificate]) -> x509.Certificate:
    """What a client pins (as ``safeboard.client.certificate.trust_anchor`` decides): the
    topmost CA reached by following signatures up from the leaf, else the leaf."""
    anchor = chain[0]
    for issuer in chain[1:]:
        try:
            is_ca = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            anchor.verify_directly_issued_by(issuer)
        except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
            break
        if not is_ca:
            break
        anchor = issuer
    return anchor


def _pin_line(ca: x509.Certificate) -> str:
    return f"`safeboard login URL` shows and pins the CA: {cert_fingerprint(ca)}"


def _describe(cert: x509.Certificate, path: Path, now: datetime) -> list[str]:
    names, end = ", ".join(cert_names(cert)), cert.not_valid_after_utc
    return [
        f"{'Server certificate' if names else 'Local CA'}: {path}",
        f"  fingerprint: {cert_fingerprint(cert)}",
        f"  expires:     {end:%Y-%m-%d %H:%M} UTC (in {(end - now).days} days)",
        *([f"  names:       {names}"] if names else []),
    ]


_TRUST = """\
Trust the local CA once, and browsers and tools accept the certificates it issues:
  Firefox: Settings > Privacy & Security > Certificates > View Certificates >
    Authorities > Import {ca}, tick 'Trust this CA to identify websites'
  Chrome (Linux): Settings > Privacy and security > Security > Manage certificates >
    Authorities > Import {ca} (on macOS and Windows, Chrome uses the system store)
  Debian/Ubuntu:
    sudo cp {ca} /usr/local/share/ca-certificates/safeboard.crt && sudo update-ca-certificates
  macOS:
    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}
  safeboard CLI, SDK and agents: --ca-cert {ca}
Compare the CA fingerprint out of band before trusting it. Whoever holds ca.key can
impersonate any site to machines that trust this CA: keep ca.key private (0600)."""
