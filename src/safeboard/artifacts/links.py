"""Signed preview links (S12): what a browser uses to show an image of an artifact, since
an ``<img>`` cannot send an Authorization header and a long-lived credential must never
sit in a URL.

A link token is ``sbp1.<artifact id>.<user id>.<expiry>.<credential>.<mac>``: the
expiry in Unix seconds, the credential ``s`` for a session or the id of the API key that
asked for the link, the MAC an HMAC-SHA256 under the server's generated ``signing_key``
over the other fields, base64url. It is worth one artifact, for one user, for at most
five minutes; whether that user (and that key) may still read the artifact is checked at
every use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from safeboard.vocabulary import ID_PATTERN

__all__ = ["SESSION", "LinkClaims", "check_link", "sign_link"]

PREFIX = "sbp1"
_TOKEN = re.compile(
    rf"^sbp1\.({ID_PATTERN})\.([0-9]{{1,12}})\.([0-9]{{1,12}})\.(s|[A-Za-z0-9]{{1,64}})"
    r"\.([A-Za-z0-9_-]{43})$"
)
SESSION = "s"


@dataclass(frozen=True)
class LinkClaims:
    artifact_id: str
    user_id: int
    expires: int
    credential: str = SESSION  # or the id of the API key that minted the link


def _mac(key: bytes, claims: LinkClaims) -> str:
    fields = (PREFIX, claims.artifact_id, str(claims.user_id), str(claims.expires),
              claims.credential)  # fmt: skip
    message = "\x00".join(fields).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_link(key: bytes, claims: LinkClaims) -> str:
    mac = _mac(key, claims)
    return (
        f"{PREFIX}.{claims.artifact_id}.{claims.user_id}.{claims.expires}.{claims.credential}.{mac}"
    )


def check_link(key: bytes, token: str, now: float) -> LinkClaims | None:
    """The claims of a genuine, unexpired token; None for anything else."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    artifact_id, user, expires, credential, mac = match.groups()
    claims = LinkClaims(artifact_id, int(user), int(expires), credential)
    expected = _mac(key, claims)
    if not hmac.compare_digest(expected, mac) or now >= claims.expires:
        return None
    return claims
