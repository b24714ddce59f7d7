"""Keep credentials out of log lines (S15).

Three layers: the access log never formats headers and passes query strings through
``redact_query`` and paths through ``redact``; ``RedactingFilter`` scrubs every record's
message; ``RedactingFormatter`` scrubs the finished line, tracebacks included (exception
messages may carry a database URL or a token).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

__all__ = [
    "REDACTED",
    "SENSITIVE_NAME_PARTS",
    "RedactingFilter",
    "RedactingFormatter",
    "is_sensitive_name",
    "redact",
    "redact_path",
    "redact_query",
]

REDACTED = "[REDACTED]"

# A query parameter (or key=value pair) whose name contains one of these is never logged.
SENSITIVE_NAME_PARTS = (
    "token",
    "key",
    "secret",
    "pass",
    "pwd",
    "auth",
    "sig",
    "session",
    "jwt",
    "cred",
    "code",
    "cookie",
    "csrf",
    "invite",
    "bearer",
    "binding",
)

_NAME_PART = "|".join(SENSITIVE_NAME_PARTS)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys: sb_<id>_<secret>
    (re.compile(r"sb_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"), REDACTED),
    # Signed preview links (artifacts): sbp1.<artifact>.<user>.<expiry>.<key>.<mac>, and
    # whatever follows their path, however it is encoded.
    (re.compile(r"sbp1\.[A-Za-z0-9._\-]+"), "sbp1." + REDACTED),
    (re.compile(r"(/files/preview/)[^\s?#\"']+"), r"\1" + REDACTED),
    # Authorization header values that reached a message somehow.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    # Passwords in URLs: scheme://user:password@host
    (re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^\s/:@]*):[^\s/@]*@"), r"\1:" + REDACTED + "@"),
    # name=value and name: value pairs whose name looks sensitive (also inside longer names
    # such as auth_token or private_key), in query strings, cookies, JSON-ish text or prose.
    (
        re.compile(r"(?i)([\w.\-]*(?:" + _NAME_PART + r")[\w.\-]*\"?\s*[=:]\s*\"?)([^&;\s,\"'}]+)"),
        r"\1" + REDACTED,
    ),
)


def is_sensitive_name(name: str) -> bool:
    lowered = unquote(name).lower()
    return any(part in lowered for part in SENSITIVE_NAME_PARTS)


def _escape_controls(text: str) -> str:
    """No line breaks or other control characters: one request, one log line."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def redact(text: str) -> str:
    """Replace anything shaped like a credential in ``text``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_query(query: str) -> str:
    """A raw query string with the values of sensitive-looking parameters replaced.

    Split on ``&`` and ``;`` as sent, never re-encoded, control characters escaped.
    """
    if not query:
        return ""
    parts = []
    for part in re.split(r"[&;]", query):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and is_sensitive_name(name) else part)
    return _escape_controls(redact("&".join(parts)))


def redact_path(path: str) -> str:
    return _escape_controls(redact(path))


class RedactingFilter(logging.Filter):
    """Scrub credentials from the formatted message and arguments of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingFormatter(logging.Formatter):
    """Scrub the whole formatted line: message, traceback and stack."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
