"""Keep credentials out of log lines (S15).

Two layers: the access log never formats headers and passes query strings through
``redact_query``; and ``RedactingFilter`` scrubs anything shaped like a credential from every
record that reaches a handler, as a net under code that logs carelessly.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

__all__ = ["REDACTED", "SENSITIVE_PARAMS", "RedactingFilter", "redact", "redact_query"]

REDACTED = "[REDACTED]"

# Query parameter names whose values are never logged (compared case-folded, '-' as '_').
SENSITIVE_PARAMS = frozenset(
    {
        "token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "key",
        "secret", "client_secret", "password", "passwd", "pwd", "session", "sessionid",
        "auth", "authorization", "code", "signature", "sig", "csrf", "csrf_token", "invite",
    }
)  # fmt: skip

_PATTERNS = (
    # API keys: sb_<id>_<secret>
    re.compile(r"\bsb_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"),
    # Authorization header values that reached a message somehow.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"),
    # name=value pairs for sensitive names, in query strings, cookies or prose.
    re.compile(
        r"(?i)\b(" + "|".join(sorted(SENSITIVE_PARAMS, key=len, reverse=True)) + r")=[^&\s;,\"']+"
    ),
    re.compile(r"(?i)(__Host-safeboard|safeboard_session)=[^;\s]+"),
)


def redact(text: str) -> str:
    """Replace anything shaped like a credential in ``text``."""
    for pattern in _PATTERNS:
        text = pattern.sub(_replacement, text)
    return text


def _replacement(match: re.Match[str]) -> str:
    whole = match.group(0)
    if "=" in whole:
        return whole.split("=", 1)[0] + "=" + REDACTED
    if match.re is _PATTERNS[1]:
        return match.group(1) + " " + REDACTED
    return REDACTED


def redact_query(query: str) -> str:
    """A query string with the values of sensitive parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    cleaned = [
        (name, REDACTED if name.casefold().replace("-", "_") in SENSITIVE_PARAMS else value)
        for name, value in pairs
    ]
    return redact(urlencode(cleaned, safe="[]/"))


class RedactingFilter(logging.Filter):
    """Scrub credentials from the formatted message and arguments of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
