"""Keep credentials out of log lines (S15).

Three layers: the access log never formats headers and passes query strings through
``redact_query`` and paths through ``redact``; ``RedactingFilter`` scrubs every record's
message; ``RedactingFormatter`` scrubs the finished line, tracebacks included (exception
messages may carry a database URL or a token).

Encodings do not hide a secret. Any word of a line that holds ``%`` or ``+`` is also
read decoded (percent-decoding repeated until nothing changes, with and without ``+`` as a
space): the pieces of it (between ``/ ? & ; #``) whose decoded reading holds a secret are
replaced, and the whole word when a secret spans pieces or the decoding never settles.
What holds no secret is logged as it was sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import unquote, unquote_plus

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


def _sensitive_pair(match: re.Match[str]) -> str:
    name = match.group(1).lower()
    if any(part in name for part in SENSITIVE_NAME_PARTS):
        return match.group(1) + match.group(2) + REDACTED
    return match.group(0)


# Every pattern starts where a run of its leading characters starts (a lookbehind, or a
# literal), so a long line is scanned in linear time: a pattern free to start anywhere in
# a run (like the former `[\w.\-]*(?:token|...)`) takes seconds for 10,000 letters.
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # API keys: sb_<id>_<secret>
    (re.compile(r"sb_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"), REDACTED),
    # Signed preview links (artifacts): sbp1.<artifact>.<user>.<expiry>.<key>.<mac>, and
    # whatever follows their path, however it is encoded.
    (re.compile(r"sbp1\.[A-Za-z0-9._\-]+"), "sbp1." + REDACTED),
    (re.compile(r"(/files/preview/)[^\s?#\"']+"), r"\1" + REDACTED),
    # Authorization header values that reached a message somehow.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=%\-]+"), r"\1 " + REDACTED),
    # Passwords in URLs: scheme://user:password@host
    (
        re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://[^\s/:@]*):[^\s/@]*@"),
        r"\1:" + REDACTED + "@",
    ),
    # name=value and name: value pairs whose name looks sensitive (also inside longer names
    # such as auth_token or private_key), in query strings, cookies, JSON-ish text or prose.
    (
        re.compile(r"(?<![\w.\-])([\w.\-]+)(\"?\s*[=:]\s*\"?)([^&;\s,\"'}]+)"),
        _sensitive_pair,
    ),
)


# Percent-decoding rounds before a word that still changes counts as hiding something.
MAX_DECODINGS = 8
_SPACES = re.compile(r"(\s+)")
_PIECES = re.compile(r"([/?&;#])")


def _decoded(text: str) -> list[str] | None:
    """``text`` percent-decoded until it settles, read with ``+`` as itself and as a space;
    None when it has not settled after ``MAX_DECODINGS`` rounds."""
    readings = []
    for decode in (unquote, unquote_plus):
        current = text
        for _ in range(MAX_DECODINGS):
            decoded = decode(current)
            if decoded == current:
                break
            current = decoded
        else:
            return None
        readings.append(current)
    return readings


def _redact_plain(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _hides_secret(text: str) -> bool:
    """True when ``text``, read as sent or decoded in any way, holds a secret."""
    if "%" not in text and "+" not in text:
        return _redact_plain(text) != text
    readings = _decoded(text)
    if readings is None:
        return True
    return any(_redact_plain(reading) != reading for reading in (text, *readings))


def _redact_piece(piece: str) -> str:
    if not _hides_secret(piece):
        return piece
    name, eq, _ = piece.partition("=")
    if eq and not _hides_secret(name):
        return f"{name}={REDACTED}"
    return REDACTED


def _redact_encoded_word(word: str) -> str:
    if ("%" not in word and "+" not in word) or not _hides_secret(word):
        return word
    cleaned = "".join(_redact_piece(piece) for piece in _PIECES.split(word))
    return REDACTED if _hides_secret(cleaned) else cleaned


def is_sensitive_name(name: str) -> bool:
    readings = _decoded(name)
    if readings is None:
        return True
    return any(part in reading.lower() for reading in readings for part in SENSITIVE_NAME_PARTS)


def _escape_controls(text: str) -> str:
    """No line breaks or other control characters: one request, one log line."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def redact(text: str) -> str:
    """Replace anything shaped like a credential in ``text``, however it is encoded."""
    text = _redact_plain(text)
    if "%" in text or "+" in text:
        text = "".join(_redact_encoded_word(word) for word in _SPACES.split(text))
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
