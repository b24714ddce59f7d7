"""Every secret token safeboard makes: how it is generated, hashed and parsed.

Tokens come from ``secrets`` (CSPRNG). Only hashes are stored; comparisons of secrets
use ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "ApiKey",
    "binding_hash",
    "csrf_token_for",
    "new_api_key",
    "new_token",
    "parse_api_key",
    "session_hash",
    "sha256_hex",
    "tokens_equal",
]

_API_KEY = re.compile(r"sb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def new_token() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def session_hash(key: str, session_id: str) -> str:
    """What the sessions table stores for a session id: HMAC-SHA256 under the session key,
    so a copy of the database alone cannot be used to forge or look up cookies."""
    return hmac.new(key.encode(), b"session:" + session_id.encode(), hashlib.sha256).hexdigest()


def binding_hash(key: str, binding: str) -> str:
    """What the sessions table stores for a session's binding secret (the value the
    browser's service worker sends as ``X-Safeboard-Binding``): an HMAC, like the id."""
    return hmac.new(key.encode(), b"binding:" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_token_for(key: str, session_id: str) -> str:
    """The CSRF token bound to a session (derived, so nothing more is stored)."""
    return hmac.new(key.encode(), b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    secret: str

    @property
    def token(self) -> str:
        return f"sb_{self.id}_{self.secret}"

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, secret='**********')"


def new_api_key() -> ApiKey:
    return ApiKey(id=secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def parse_api_key(token: str) -> ApiKey | None:
    match = _API_KEY.fullmatch(token)
    return ApiKey(match.group(1), match.group(2)) if match else None
