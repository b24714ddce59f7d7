"""A server's certificate chain as a person judges it, and the certificate worth pinning (S13).

A server with a generated certificate presents its leaf and the CA that issued it. The CA
is what a client pins: the leaf is renewed within 30 days of expiry and reissued when its
names change, the CA lasts ten years. A chain that holds no CA issuing its leaf (a given
self-signed certificate) leaves the leaf itself to pin.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from safeboard.client.fingerprint import format_fingerprint

if TYPE_CHECKING:  # imported where parsed (about 45 ms of CPU): most clients never parse one
    from cryptography import x509

__all__ = ["CertificateInfo", "peer_chain", "trust_anchor"]


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate, and what a person needs to decide whether to trust it."""

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

    @property
    def spki_pin(self) -> str:
        """SHA-256 of the SubjectPublicKeyInfo, base64url without padding: the pin an
        agent's join string carries (RFC 7469, kubeadm's CA cert hash)."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

        spki = self.x509.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()

    @property
    def x509(self) -> x509.Certificate:
        from cryptography import x509  # noqa: PLC0415

        return x509.load_der_x509_certificate(self.der)

    @property
    def is_ca(self) -> bool:
        """True for a CA certificate (basic constraints), which may issue server certificates."""
        from cryptography import x509  # noqa: PLC0415

        try:
            return bool(
                self.x509.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            )
        except (x509.ExtensionNotFound, ValueError):
            return False

    def issued(self, other: CertificateInfo) -> bool:
        """True when this is a CA whose key signed ``other`` (names and signature checked)."""
        if not self.is_ca:
            return False
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        try:
            other.x509.verify_directly_issued_by(self.x509)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def describe(self) -> list[str]:
        """Fingerprint, subject, issuer, SANs and validity, one ``label: value`` per line."""
        from cryptography import x509  # noqa: PLC0415

        cert = self.x509
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
            *([] if self.is_ca else [f"names:       {', '.join(sans) or '(none)'}"]),
            f"valid:       {cert.not_valid_before_utc:%Y-%m-%d} to {expiry:%Y-%m-%d %H:%M} UTC"
            + (" (EXPIRED)" if left < 0 else f" ({left} days left)"),
        ]


def trust_anchor(chain: list[CertificateInfo]) -> CertificateInfo:
    """The certificate to pin for a presented chain (leaf first): the topmost CA reached
    by following signatures up from the leaf, or the leaf when no CA in it issued it."""
    anchor = chain[0]
    for issuer in chain[1:]:
        if not issuer.issued(anchor):
            break
        anchor = issuer
    return anchor


def peer_chain(tls: ssl.SSLSocket | ssl.SSLObject, *, verified: bool = False) -> list[bytes]:
    """The DER certificates the peer presented (or the chain OpenSSL verified), leaf first."""
    name = "get_verified_chain" if verified else "get_unverified_chain"
    public = getattr(tls, name, None)
    if public is not None:  # Python 3.13+: a list of DER bytes
        return [bytes(cert) for cert in public() or ()]
    inner = getattr(tls, "_sslobj", None)  # 3.11 and 3.12: _ssl.Certificate objects
    certs = getattr(inner, name)() if inner is not None else None
    encoding = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
    return [cert.public_bytes(encoding) for cert in certs or ()]
