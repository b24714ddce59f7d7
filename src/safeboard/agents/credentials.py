"""The agents domain's secrets: join tokens, agent credentials, and the CA pin a join
string carries. Made with ``secrets``, stored as SHA-256, compared in constant time.

- join string: ``sbjoin1.<token id>.<secret>.<pin>@<server URL>``; the secret has 192
  bits; the pin is the SHA-256 of the CA's SubjectPublicKeyInfo, base64url without
  padding (kubeadm's ``--discovery-token-ca-cert-hash``, RFC 7469), empty only for a
  plain-HTTP server on loopback.
- agent credential: ``sb_agent_<12 hex id>_<43 url-safe>`` (256 bits), as API keys (S8).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "JOIN_PREFIX",
    "AgentSecret",
    "JoinSecret",
    "format_join_string",
    "new_agent_secret",
    "new_join_secret",
    "parse_agent_credential",
    "parse_join_secret",
    "spki_pin",
]

JOIN_PREFIX = "sbjoin1"
_AGENT = re.compile(r"sb_agent_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_JOIN = re.compile(r"([0-9a-f]{12})\.([A-Za-z0-9_-]{32,64})")


@dataclass(frozen=True)
class JoinSecret:
    id: str
    secret: str

    def __repr__(self) -> str:
        return f"JoinSecret(id={self.id!r}, secret='**********')"


@dataclass(frozen=True)
class AgentSecret:
    id: str
    secret: str

    @property
    def token(self) -> str:
        return f"sb_agent_{self.id}_{self.secret}"

    def __repr__(self) -> str:
        return f"AgentSecret(id={self.id!r}, secret='**********')"


def new_join_secret() -> JoinSecret:
    return JoinSecret(id=secrets.token_hex(6), secret=secrets.token_urlsafe(24))


def new_agent_secret() -> AgentSecret:
    return AgentSecret(id=secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def parse_join_secret(text: str) -> JoinSecret | None:
    """``<id>.<secret>`` from what an agent sends: those two fields, or a whole join
    string (its pin and URL are ignored here: the agent checked them)."""
    value = text.strip().removeprefix(f"{JOIN_PREFIX}.")
    head = ".".join(value.split("@", 1)[0].split(".")[:2])
    match = _JOIN.fullmatch(head)
    return JoinSecret(match.group(1), match.group(2)) if match else None


def parse_agent_credential(token: str) -> AgentSecret | None:
    match = _AGENT.fullmatch(token)
    return AgentSecret(match.group(1), match.group(2)) if match else None


def spki_pin(certificate_der: bytes) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, base64url, no padding."""
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()


def format_join_string(token: JoinSecret, pin: str, url: str) -> str:
    return f"{JOIN_PREFIX}.{token.id}.{token.secret}.{pin}@{url}"
