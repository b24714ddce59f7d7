"""Certificate fingerprints as people compare them: ``SHA256:AB:CD:...`` (S13).

The same form as the server prints (``safeboard.server.certificates.format_fingerprint``),
kept here so that clients never import server code.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from safeboard.errors import BadRequest

__all__ = ["format_fingerprint", "parse_fingerprint", "same_fingerprint"]

_PREFIX = "SHA256:"
_HEX = re.compile(r"[0-9A-F]{64}\Z")


def format_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate: ``SHA256:`` and 32 upper-case hex bytes joined by ``:``."""
    return _PREFIX + ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def parse_fingerprint(text: str) -> str:
    """A typed or pasted fingerprint in the canonical form; raises ``BadRequest`` otherwise.

    Accepts the ``SHA256:`` prefix or none, any case, and ``:``, spaces or nothing between
    the bytes (``openssl x509 -fingerprint -sha256`` prints ``sha256 Fingerprint=AB:CD...``).
    """
    value = text.strip()
    head, sep, tail = value.partition("=")
    if sep and head.strip().lower().replace(" ", "") in ("sha256fingerprint", "sha256"):
        value = tail
    if value.upper().startswith(_PREFIX):
        value = value[len(_PREFIX) :]
    digits = re.sub(r"[\s:]", "", value).upper()
    if not _HEX.match(digits):
        raise BadRequest(
            "a fingerprint is SHA256: and 32 hex bytes, e.g. SHA256:AB:CD:...; "
            "the server's admin sees it with `safeboard tls show`"
        )
    return _PREFIX + ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def same_fingerprint(expected: str, presented: str) -> bool:
    """Compare two canonical fingerprints in constant time."""
    return hmac.compare_digest(expected.encode("ascii"), presented.encode("ascii"))
