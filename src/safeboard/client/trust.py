"""Which server certificates this client trusts (S13).

Three ways to trust a server: the system's CAs (the default), a CA file (``--ca-cert``), or
a certificate pinned on first use after a person confirmed its SHA-256 fingerprint. A pinned
certificate is the *only* trust anchor of its context (hostname checks off: the pin is the
identity), and every handshake is also compared with the pinned fingerprint before the
connection is handed over, so a changed certificate fails before any request is written.

Pins live in ``<config_dir>/trust/`` (directory 0700, files 0600), one file per server.
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from safeboard.client.config import config_dir, private_dir, server_origin, write_private
from safeboard.client.fingerprint import format_fingerprint, same_fingerprint
from safeboard.errors import ConfigError, SafeboardError, ServiceUnavailable

__all__ = [
    "CertificateChanged",
    "CertificateInfo",
    "PinnedContext",
    "TrustStore",
    "UntrustedCertificate",
    "ca_context",
    "context_for",
    "fetch_certificate",
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


@dataclass(frozen=True)
class CertificateInfo:
    """A server certificate, and what a person needs to decide whether to trust it."""

    der: bytes

    @classmethod
    def from_pem(cls, pem: str) -> CertificateInfo:
        return cls(ssl.PEM_cert_to_DER_cert(pem))

    @property
    def pem(self) -> str:
        return ssl.DER_cert_to_PEM_cert(self.der)

    @property
    def fingerprint(self) -> str:
        return format_fingerprint(self.der)

    def describe(self) -> list[str]:
        """Fingerprint, subject, issuer, SANs and validity, one ``label: value`` per line."""
        cert = x509.load_der_x509_certificate(self.der)
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
            sans += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            sans = []
        expiry = cert.not_valid_after_utc
        left = (expiry - datetime.now(UTC)).days
        return [
            f"fingerprint: {self.fingerprint}",
            f"subject:     {cert.subject.rfc4514_string() or '(empty)'}",
            f"issuer:      {cert.issuer.rfc4514_string() or '(empty)'}",
            f"names:       {', '.join(sans) or '(none)'}",
            f"valid:       {cert.not_valid_before_utc:%Y-%m-%d} to {expiry:%Y-%m-%d %H:%M} UTC"
            + (" (EXPIRED)" if left < 0 else f" ({left} days left)"),
        ]


def _handshake(origin: str, context: ssl.SSLContext, timeout: float) -> bytes:
    """Connect, complete a TLS handshake, send nothing, return the leaf certificate (DER)."""
    parts = urlsplit(origin)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        raise
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ServiceUnavailable(f"cannot reach {origin}: {reason}") from None
    if not der:
        raise UntrustedCertificate(f"{origin} presented no certificate")
    return der


def fetch_certificate(url: str, timeout: float = _TIMEOUT) -> CertificateInfo:
    """The certificate ``url`` presents, read without verifying it, for a person to judge."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only looking: nothing is sent on this connection
    return CertificateInfo(_handshake(server_origin(url), context, timeout))


def _check_peer(context: ssl.SSLContext, der: bytes | None) -> None:
    if isinstance(context, PinnedContext):
        presented = format_fingerprint(der or b"")
        if not same_fingerprint(context.expected_fingerprint, presented):
            expected, hint = context.expected_fingerprint, context.changed_hint
            raise CertificateChanged(context.server_url, expected, presented, hint=hint)


class _CheckedSocket(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            _check_peer(self.context, self.getpeercert(binary_form=True))
        except CertificateChanged:
            self.close()
            raise


class _CheckedObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()
        _check_peer(self.context, self.getpeercert(binary_form=True))


class PinnedContext(ssl.SSLContext):
    """A client context that also compares each peer's fingerprint after the handshake,
    before the connection is handed to the HTTP client: nothing is written on a mismatch."""

    sslsocket_class = _CheckedSocket
    sslobject_class = _CheckedObject
    server_url: str
    expected_fingerprint: str
    changed_hint: str


def pinned_context(
    url: str,
    fingerprint: str,
    *,
    anchor_pem: str | None = None,
    ca_file: Path | None = None,
    changed_hint: str = "",
) -> PinnedContext:
    """Trust only ``anchor_pem`` (hostname unchecked: the pin is the identity), or a CA file
    (hostname checked); either way the peer must also have ``fingerprint``."""
    context = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-signed leaf as the anchor
    if ca_file is not None:
        _load_ca(context, ca_file)
    else:
        context.check_hostname = False
        context.load_verify_locations(cadata=anchor_pem)
    context.server_url = server_origin(url)
    context.expected_fingerprint = fingerprint
    context.changed_hint = changed_hint
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
        """The certificate pinned for ``url``, or None."""
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
            "version": 1,
            "url": server_origin(url),
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
    pinned = (store or TrustStore()).get(url)
    if pinned is not None:
        return pinned_context(url, pinned.fingerprint, anchor_pem=pinned.pem)
    return system_context()


def probe(url: str, context: ssl.SSLContext, timeout: float = _TIMEOUT) -> CertificateInfo:
    """Handshake with ``context`` and send nothing: the certificate when it is trusted, else
    ``CertificateChanged`` (a pin or expected fingerprint differs) or ``UntrustedCertificate``."""
    origin = server_origin(url)
    try:
        return CertificateInfo(_handshake(origin, context, timeout))
    except ssl.SSLCertVerificationError as exc:
        untrusted = exc
    if isinstance(context, PinnedContext):
        presented = fetch_certificate(origin, timeout).fingerprint
        if same_fingerprint(context.expected_fingerprint, presented):
            raise UntrustedCertificate(
                f"the trusted certificate of {origin} fails verification now "
                f"({untrusted.verify_message}); nothing was sent"
            )
        raise CertificateChanged(
            context.server_url, context.expected_fingerprint, presented, hint=context.changed_hint
        )
    raise UntrustedCertificate(
        f"the TLS certificate of {origin} is not trusted ({untrusted.verify_message}); "
        "nothing was sent"
    )
