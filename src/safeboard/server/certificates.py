"""Server certificates (S10): a local CA signing short-lived leaves, or the operator's own.

Generated files live in ``<data_dir>/tls`` (0700): ``ca.pem``/``ca.key`` (the CA, reused
across renewals) and ``server.pem`` (leaf + CA)/``server.key``, all written 0600.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import socket
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safeboard.datadir import DIR_MODE, ensure_data_dir, require_private, write_private
from safeboard.errors import ConfigError
from safeboard.server.addresses import machine_addresses
from safeboard.settings import Settings, is_wildcard_host

__all__ = [
    "TlsMaterial",
    "cert_fingerprint",
    "cert_names",
    "format_fingerprint",
    "load_given",
    "prepare_tls",
    "read_certs",
    "trust_anchor_der",
]

logger = logging.getLogger("safeboard.tls")

TLS_DIR, CA_CERT, CA_KEY = "tls", "ca.pem", "ca.key"
LEAF_CERT, LEAF_KEY = "server.pem", "server.key"
LEAF_LIFETIME = timedelta(days=90)
RENEW_BEFORE = timedelta(days=30)
CA_LIFETIME = timedelta(days=3650)
_BACKDATE = timedelta(minutes=5)  # tolerate clients whose clock runs a little behind
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_GIVEN_FIX = "give a readable PEM certificate chain and its unencrypted key (--tls-cert/--tls-key)"
_USAGES = "digital_signature content_commitment key_encipherment data_encipherment key_agreement"
_USAGES += " key_cert_sign crl_sign encipher_only decipher_only"
_PEM = serialization.Encoding.PEM
_Key = ec.EllipticCurvePrivateKey
_Issuer = tuple[x509.Certificate, _Key]
_Ext = tuple[x509.ExtensionType, bool]


@dataclass(frozen=True)
class TlsMaterial:
    """What the server serves, and what to show people so they can trust it."""

    cert_path: Path
    key_path: Path
    ca_path: Path | None  # None for a given certificate
    fingerprint: str
    ca_fingerprint: str | None
    not_after: datetime
    names: tuple[str, ...]
    generated: bool
    renewed: bool  # a new leaf was issued at this start
    renewal: str | None = None  # why it was: "there was none", "the names changed", ...
    ca_status: str = ""  # generated: "unchanged", or why a new CA was made at this start


def format_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as browsers show it: ``SHA256:AB:CD:...``."""
    return "SHA256:" + ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{usage: usage in allowed for usage in _USAGES.split()})


def cert_fingerprint(cert: x509.Certificate) -> str:
    return format_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _key_pem(key: _Key) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _dns_name(value: str, *, wildcard: bool = False) -> str | None:
    """``value`` as a lower-case A-label DNS name, or None if it is not one."""
    try:
        name = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = name.split(".")
    if wildcard and labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    return name if 0 < len(name) <= 253 and all(map(_LABEL.match, labels)) else None


def _general_name(value: str, flag: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    if name := _dns_name(value, wildcard=True):
        return x509.DNSName(name)
    raise ConfigError(f"{flag} {value!r} is neither an IP address nor a DNS name: fix or drop it")


def _wanted_names(settings: Settings) -> list[x509.GeneralName]:
    """The SANs a generated leaf carries: loopback, this machine, the bind host (for a
    wildcard bind, every address of this machine), --tls-san, the host of public_url."""
    names = [_general_name(name, "") for name in ("localhost", "127.0.0.1", "::1")]
    for machine in (socket.gethostname(), socket.getfqdn()):
        if name := _dns_name(machine):
            names.append(x509.DNSName(name))
    host = settings.server.host.strip("[]")
    if is_wildcard_host(host):
        names += [_general_name(address, "") for address in machine_addresses()]
    else:
        names.append(_general_name(host, "--host"))
    names += [_general_name(entry, "--tls-san") for entry in settings.tls.san]
    if settings.server.public_url:  # the address teammates are told to use
        public_host = urlsplit(settings.server.public_url).hostname or ""
        names.append(_general_name(public_host, "server.public_url"))
    return list(dict.fromkeys(names))


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(name.value) for name in sans)


def _issue(
    cn: str, issuer: _Issuer | None, start: datetime, end: datetime, *extensions: _Ext
) -> tuple[x509.Certificate, _Key]:
    """A new P-256 key and its certificate, signed with SHA-256 by ``issuer`` (or itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    signer, signer_key = issuer or (None, key)
    issuer_ski = signer.extensions.get_extension_for_class(type(ski)).value if signer else ski
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), False
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(signer_key, hashes.SHA256()), key


def _new_ca(now: datetime) -> tuple[x509.Certificate, _Key]:
    start, cn = now - _BACKDATE, f"safeboard local CA {socket.gethostname()}"
    basic = x509.BasicConstraints(ca=True, path_length=0)
    usage = _key_usage("key_cert_sign", "crl_sign")
    return _issue(cn, None, start, start + CA_LIFETIME, (basic, True), (usage, True))


def _issue_leaf(
    ca: x509.Certificate,
    ca_key: _Key,
    names: list[x509.GeneralName],
    now: datetime,
    lifetime: timedelta = LEAF_LIFETIME,
) -> tuple[x509.Certificate, _Key]:
    """A server certificate for ``names`` signed by the CA, valid ``lifetime`` (<= 90 days)."""
    if lifetime > LEAF_LIFETIME:
        raise ValueError(f"a server certificate lives at most {LEAF_LIFETIME.days} days")
    start = now - _BACKDATE
    end = min(start + lifetime, ca.not_valid_after_utc)
    return _issue(
        "safeboard server",
        (ca, ca_key),
        start,
        end,
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage("digital_signature"), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName(names), False),
    )


def _read(path: Path, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}): {fix}") from None


def read_certs(path: Path, fix: str) -> list[x509.Certificate]:
    data = _read(path, fix)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        hint = " (it holds a private key: are cert and key swapped?)" * (b"KEY-----" in data)
        raise ConfigError(f"{path} holds no PEM certificate{hint}: {fix}") from None


def _read_key(path: Path, fix: str) -> PrivateKeyTypes:
    data = _read(path, fix)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{path} is encrypted with a passphrase; safeboard needs an unencrypted key (0600): "
            f"openssl pkey -in {path} -out server.key && chmod 600 server.key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (it holds a certificate: are cert and key swapped?)" * (b"CERTIFICATE" in data)
        raise ConfigError(f"{path} holds no usable PEM private key{hint}: {fix}") from None


def _matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def load_given(cert_path: Path, key_path: Path, now: datetime) -> x509.Certificate:
    """The leaf of a given chain file, checked against its key and the clock."""
    leaf, key = read_certs(cert_path, _GIVEN_FIX)[0], _read_key(key_path, _GIVEN_FIX)
    if not _matches(leaf, key):
        raise ConfigError(
            f"{key_path} is not the key of the first certificate in {cert_path}: give that "
            "certificate's key (a chain file starts with the server certificate, then its CAs)"
        )
    if now < leaf.not_valid_before_utc:
        raise ConfigError(
            f"{cert_path} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
            "check this machine's clock, or give a current certificate"
        )
    if now >= leaf.not_valid_after_utc:
        raise ConfigError(
            f"{cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d} UTC: renew it, or drop "
            "--tls-cert/--tls-key to serve a generated certificate"
        )
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        logger.warning("%s expires on %s: renew it soon", cert_path, leaf.not_valid_after_utc)
    if stat.S_IMODE(key_path.stat().st_mode) & 0o004:
        logger.warning("%s is readable by every user: run chmod 600 %s", key_path, key_path)
    return leaf


def _ca(tls_dir: Path, now: datetime) -> tuple[x509.Certificate, _Key, str]:
    """The local CA, made when missing or about to expire; and "unchanged" or why it is new."""
    cert_path, key_path = tls_dir / CA_CERT, tls_dir / CA_KEY
    first = not (tls_dir / LEAF_CERT).exists()
    status = "new: first start" if first else "new: the previous CA's files were missing"
    if cert_path.exists() and key_path.exists():
        require_private(key_path)
        fix = f"delete {cert_path} and {key_path} to make a new CA (then trust the new ca.pem)"
        cert, key = read_certs(cert_path, fix)[0], _read_key(key_path, fix)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _matches(cert, key):
            raise ConfigError(f"{key_path} is not the key of {cert_path}: {fix}")
        if cert.not_valid_after_utc - now >= LEAF_LIFETIME:
            return cert, key, "unchanged"
        logger.warning("local CA %s expires soon: making a new one", cert_path)
        status = "new: the previous one expired soon"
    cert, key = _new_ca(now)
    write_private(key_path, _key_pem(key))  # key first: a crash never leaves a CA without its key
    write_private(cert_path, cert.public_bytes(_PEM))
    logger.info("created a local CA in %s (%s)", cert_path, cert_fingerprint(cert))
    return cert, key, status


def _leaf_problem(
    tls_dir: Path, ca: x509.Certificate, names: list[x509.GeneralName], now: datetime
) -> str | None:
    """Why the stored leaf cannot be served again, or None if it can."""
    cert_path, key_path = tls_dir / LEAF_CERT, tls_dir / LEAF_KEY
    if not (cert_path.exists() and key_path.exists()):
        return "there was none"
    require_private(key_path)
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        leaf.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature):
        return "the stored one is unreadable or not signed by the current CA"
    problems = (
        (not _matches(leaf, key), "the stored key does not match"),
        (leaf.not_valid_before_utc > now, "the stored one is not valid yet"),
        (leaf.not_valid_after_utc - now < RENEW_BEFORE, "the stored one expires soon"),
        (set(cert_names(leaf)) != {str(name.value) for name in names}, "the names changed"),
    )
    return next((why for failed, why in problems if failed), None)


def prepare_tls(settings: Settings, *, now: datetime | None = None) -> TlsMaterial:
    """Load the given certificate, or make sure a current generated one exists."""
    now = now or datetime.now(UTC)
    if settings.tls.cert is not None and settings.tls.key is not None:
        cert_path, key_path = settings.tls.cert.expanduser(), settings.tls.key.expanduser()
        leaf = load_given(cert_path, key_path, now)
        return TlsMaterial(
            cert_path=cert_path,
            key_path=key_path,
            ca_path=None,
            fingerprint=cert_fingerprint(leaf),
            ca_fingerprint=None,
            not_after=leaf.not_valid_after_utc,
            names=cert_names(leaf),
            generated=False,
            renewed=False,
        )
    names = _wanted_names(settings)
    tls_dir = ensure_data_dir(settings.data_dir) / TLS_DIR
    try:
        return _prepare_generated(tls_dir, names, now)
    except OSError as exc:
        raise ConfigError(
            f"cannot write TLS files in {tls_dir} ({exc.strerror or exc}): check the owner and "
            "free space of the data directory, or give --tls-cert/--tls-key"
        ) from None


def _prepare_generated(tls_dir: Path, names: list[x509.GeneralName], now: datetime) -> TlsMaterial:
    tls_dir.mkdir(mode=DIR_MODE, exist_ok=True)
    if (mode := stat.S_IMODE(tls_dir.stat().st_mode)) & 0o077:
        raise ConfigError(f"{tls_dir} is open to group/others ({mode:o}): run chmod 700 {tls_dir}")
    ca_cert, ca_key, ca_status = _ca(tls_dir, now)
    cert_path, key_path = tls_dir / LEAF_CERT, tls_dir / LEAF_KEY
    if (problem := _leaf_problem(tls_dir, ca_cert, names, now)) is None:
        leaf = read_certs(cert_path, "")[0]
    else:
        leaf, key = _issue_leaf(ca_cert, ca_key, names, now)
        write_private(key_path, _key_pem(key))  # a crash in between leaves a mismatch: reissued
        write_private(cert_path, leaf.public_bytes(_PEM) + ca_cert.public_bytes(_PEM))
        logger.info("issued a server certificate (%s): %s", problem, cert_fingerprint(leaf))
    return TlsMaterial(
        cert_path=cert_path,
        key_path=key_path,
        ca_path=tls_dir / CA_CERT,
        fingerprint=cert_fingerprint(leaf),
        ca_fingerprint=cert_fingerprint(ca_cert),
        not_after=leaf.not_valid_after_utc,
        names=cert_names(leaf),
        generated=True,
        renewed=problem is not None,
        renewal=problem,
        ca_status=ca_status,
    )


def trust_anchor_der(material: TlsMaterial) -> bytes:
    """The certificate (DER) that clients pin for this server, as ``client.certificate:
    trust_anchor`` picks it from the chain served: the generated CA; for a given chain,
    its topmost CA reached by signatures from the leaf, else the leaf itself."""
    chain = read_certs(material.ca_path or material.cert_path, _GIVEN_FIX)
    if material.ca_path is not None:
        return chain[0].public_bytes(serialization.Encoding.DER)
    anchor = chain[0]
    for issuer in chain[1:]:
        try:
            anchor.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            break
        anchor = issuer
    return anchor.public_bytes(serialization.Encoding.DER)
