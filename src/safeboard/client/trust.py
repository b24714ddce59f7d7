"""Which server certificates this client trusts (S13).

Three ways to trust a server: the system's CAs (the default), a CA file (``--ca-cert``), or
a certificate pinned on first use after a person confirmed its SHA-256 fingerprint. The pin
is the CA the server presents with its leaf when there is one (a generated certificate):
the leaf is then verified against that CA alone, hostname checked, so a renewed leaf or a
new set of names verifies silently. Without a CA in the chain the leaf itself is pinned
(hostname checks off: the pin is the identity), as it was before, and such pins stored by
earlier versions keep working. A pinned certificate is the *only* trust anchor of its
context, and every handshake is also compared with the pinned fingerprint before the
connection is handed over, so a changed CA (or pinned leaf) fails before any request is
written.

Pins live in ``<config_dir>/trust/`` (directory 0700, files 0600), one file per server.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from safeboard.client.certificate import CertificateInfo, peer_chain, trust_anchor
from safeboard.client.config import config_dir, private_dir, server_origin, write_private
from safeboard.client.fingerprint import format_fingerprint, same_fingerprint
from safeboard.client.scheme import plain_http_port
from safeboard.errors import ConfigError, SafeboardError, ServiceUnavailable

__all__ = [
    "CertificateChanged",
    "CertificateInfo",
    "PinnedContext",
    "TrustStore",
    "UntrustedCertificate",
    "ca_context",
    "context_for",
    "diagnose",
    "fetch_certificate",
    "fetch_chain",
    "follow_leaf_pin",
    "pinned_context",
    "probe",
    "system_context",
]

_TIMEOUT = 10.0


class CertificateChanged(SafeboardError):
    """The server presented another certificate than the one trusted for it."""

    code = "tls_changed"

    def __init__(self, url: str, expected: str, presented: str, *, hint: str = "") -> None:
        self.url, self.expected, self.presented = url, expected, presented
        hint = hint or (
            "If the server's admin confirms the new fingerprint (they see it with "
            f"`safeboard tls show`), trust it with: safeboard login {url} --fingerprint {presented}"
        )
        super().__init__(
            f"the TLS certificate of {url} has changed; nothing was sent. "
            f"Trusted: {expected}; presented now: {presented}. {hint}"
        )


class UntrustedCertificate(SafeboardError):
    """The server's certificate is not trusted: not by the system, the CA file, or a pin."""

    code = "tls_untrusted"


def _handshake(origin: str, context: ssl.SSLContext, timeout: float) -> list[CertificateInfo]:
    """Connect, complete a TLS handshake, send nothing, return the presented chain."""
    parts = urlsplit(origin)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            chain = peer_chain(tls)
    except ssl.SSLCertVerificationError:
        raise
    except (OSError, ssl.SSLError) as exc:
        plain = plain_http_port(origin, exc)
        if plain is not None:
            raise plain from None
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ServiceUnavailable(f"cannot reach {origin}: {reason}") from None
    if not der:
        raise UntrustedCertificate(f"{origin} presented no certificate")
    if not chain or chain[0] != der:  # the leaf always comes first
        chain = [der]
    return [CertificateInfo(cert) for cert in chain]


def fetch_chain(url: str, timeout: float = _TIMEOUT) -> list[CertificateInfo]:
    """The chain ``url`` presents (leaf first), read without verifying it, to be judged."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only looking: nothing is sent on this connection
    return _handshake(server_origin(url), context, timeout)


def fetch_certificate(url: str, timeout: float = _TIMEOUT) -> CertificateInfo:
    """The certificate to judge for ``url``: the CA it presents with its leaf, else the leaf."""
    return trust_anchor(fetch_chain(url, timeout))


def _check_peer(context: ssl.SSLContext, tls: ssl.SSLSocket | ssl.SSLObject) -> None:
    if not isinstance(context, PinnedContext):
        return
    if context.pins_ca:  # the pinned CA must be the anchor OpenSSL verified the leaf with
        chain = peer_chain(tls, verified=True)
        presented = format_fingerprint(chain[-1] if chain else b"")
    else:
        presented = format_fingerprint(tls.getpeercert(binary_form=True) or b"")
    if not same_fingerprint(context.expected_fingerprint, presented):
        expected, hint = context.expected_fingerprint, context.changed_hint
        raise CertificateChanged(context.server_url, expected, presented, hint=hint)


class _CheckedSocket(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            _check_peer(self.context, self)
        except CertificateChanged:
            self.close()
            raise


class _CheckedObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()
        _check_peer(self.context, self)


class PinnedContext(ssl.SSLContext):
    """A client context that also compares each peer's fingerprint after the handshake,
    before the connection is handed to the HTTP client: nothing is written on a mismatch."""

    sslsocket_class = _CheckedSocket
    sslobject_class = _CheckedObject
    server_url: str
    expected_fingerprint: str
    changed_hint: str
    pins_ca: bool  # the pin is a CA (hostname checked), not the server's own certificate
    pinned: CertificateInfo | None  # the pinned certificate, when given as anchor_pem


def pinned_context(
    url: str,
    fingerprint: str,
    *,
    anchor_pem: str | None = None,
    ca_file: Path | None = None,
    changed_hint: str = "",
    pins_ca: bool = False,
) -> PinnedContext:
    """Trust only ``anchor_pem``, or a CA file, hostname checked; the peer must also have
    ``fingerprint``: its leaf's, or with ``pins_ca`` the anchor's. A pinned leaf is its own
    identity (hostname unchecked)."""
    context = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-signed leaf as the anchor
    if ca_file is not None:
        _load_ca(context, ca_file)
    else:
        context.check_hostname = pins_ca
        context.load_verify_locations(cadata=anchor_pem)
    context.server_url = server_origin(url)
    context.expected_fingerprint = fingerprint
    context.changed_hint = changed_hint
    context.pins_ca = pins_ca
    context.pinned = None
    if anchor_pem is not None and ca_file is None:
        with contextlib.suppress(ValueError):
            context.pinned = CertificateInfo.from_pem(anchor_pem)
    return context


def _load_ca(context: ssl.SSLContext, ca_file: Path) -> None:
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or "not a PEM certificate"
        raise ConfigError(f"cannot use CA certificate {ca_file}: {reason}") from None


def ca_context(ca_file: Path) -> ssl.SSLContext:
    """Trust servers whose certificate chains to ``ca_file`` (hostname checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, ca_file)
    return context


def system_context() -> ssl.SSLContext:
    """Trust the system's certificate authorities (hostname checked)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class TrustStore:
    """Pinned certificates, one file per server origin."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir() / "trust"

    def path_for(self, url: str) -> Path:
        slug = "".join(c if c.isalnum() or c in ".-" else "_" for c in server_origin(url))
        return self.directory / f"{slug}.json"

    def get(self, url: str) -> CertificateInfo | None:
        """The certificate pinned for ``url`` (a CA, or a server's own), or None. Records of
        version 1 hold the server's own certificate and are read as they always were."""
        path = self.path_for(url)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cert = CertificateInfo.from_pem(data["certificate"])
            consistent = data["url"] == server_origin(url) and same_fingerprint(
                data["fingerprint"], cert.fingerprint
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            consistent = False
        if not consistent:
            raise ConfigError(f"the pinned certificate {path} is damaged: delete it and log in")
        return cert

    def pin(self, url: str, cert: CertificateInfo) -> Path:
        """Trust ``cert`` for ``url`` from now on (replacing an earlier pin)."""
        private_dir(self.directory.parent)
        private_dir(self.directory)
        path = self.path_for(url)
        record = {
            "version": 2,
            "url": server_origin(url),
            "kind": "ca" if cert.is_ca else "server certificate",
            "fingerprint": cert.fingerprint,
            "pinned_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "certificate": cert.pem,
        }
        write_private(path, (json.dumps(record, indent=2) + "\n").encode())
        return path

    def forget(self, url: str) -> None:
        self.path_for(url).unlink(missing_ok=True)


def context_for(
    url: str, *, ca_file: Path | None = None, store: TrustStore | None = None
) -> ssl.SSLContext:
    """How to trust ``url``: ``ca_file`` if given, else its pin, else the system's CAs."""
    if ca_file is not None:
        return ca_context(ca_file)
    store = store or TrustStore()
    pinned = store.get(url)
    if pinned is not None:
        pinned = follow_leaf_pin(url, pinned, store, timeout=3.0)
        return pinned_context(url, pinned.fingerprint, anchor_pem=pinned.pem, pins_ca=pinned.is_ca)
    return system_context()


def follow_leaf_pin(
    url: str, pinned: CertificateInfo, store: TrustStore, timeout: float = _TIMEOUT
) -> CertificateInfo:
    """The pin to use for ``url``. A pin of the server's own certificate (what versions
    before CA pinning stored) is replaced by the CA the server presents when that CA's key
    signed the pinned certificate: trusting it trusts nothing the pin did not already vouch
    for, and renewals stop breaking the client. Otherwise (a CA pin, no such CA, the server
    away) the pin stays as it is."""
    if pinned.is_ca:
        return pinned
    try:
        anchor = trust_anchor(fetch_chain(url, timeout))
        if not anchor.issued(pinned):
            return pinned
        # The CA checks the host name, which the leaf pin did not: move only when the
        # server's certificate names the address this client uses.
        probe(url, pinned_context(url, anchor.fingerprint, anchor_pem=anchor.pem, pins_ca=True))
    except (SafeboardError, OSError, ValueError):
        return pinned
    with contextlib.suppress(SafeboardError, OSError):  # read-only: pin it next time
        store.pin(url, anchor)
    return anchor


def probe(url: str, context: ssl.SSLContext, timeout: float = _TIMEOUT) -> CertificateInfo:
    """Handshake with ``context`` and send nothing: the leaf when it is trusted, else
    ``CertificateChanged`` (a pin or expected fingerprint differs) or ``UntrustedCertificate``."""
    origin = server_origin(url)
    try:
        return _handshake(origin, context, timeout)[0]
    except ssl.SSLCertVerificationError as exc:
        raise diagnose(origin, context, exc, timeout) from None


def diagnose(
    url: str,
    context: ssl.SSLContext | bool,
    failed: ssl.SSLCertVerificationError,
    timeout: float = _TIMEOUT,
) -> SafeboardError:
    """Why a handshake with ``context`` failed verification, for the person: a pinned
    certificate that changed (both fingerprints), or one that fails for another reason."""
    origin = server_origin(url)
    why = failed.verify_message or failed.reason or "verification failed"
    if isinstance(context, PinnedContext):
        chain = fetch_chain(origin, timeout)
        presented = trust_anchor(chain) if context.pins_ca else chain[0]
        if not same_fingerprint(context.expected_fingerprint, presented.fingerprint):
            expected, hint = context.expected_fingerprint, context.changed_hint
            pinned, anchor = context.pinned, trust_anchor(chain)
            if not hint and pinned is not None and anchor.issued(pinned):
                hint = (
                    f"The server renewed its certificate under the CA that issued the pinned "
                    f"one ({anchor.fingerprint}): run `safeboard login {context.server_url}` "
                    "once to pin that CA (no password while your key is valid)"
                )
            return CertificateChanged(
                context.server_url, expected, presented.fingerprint, hint=hint
            )
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            host = urlsplit(origin).hostname
            return UntrustedCertificate(
                f"the certificate of {origin} does not name {host} ({why}); nothing was sent. "
                f"On the server, add --tls-san {host} (or connect by a name it lists: "
                "`safeboard tls show` there)"
            )
        return UntrustedCertificate(
            f"the trusted certificate of {origin} fails verification now ({why}); nothing was sent"
        )
    return UntrustedCertificate(
        f"the TLS certificate of {origin} is not trusted ({why}); nothing was sent"
    )
