"""HTTP details of serving a file: byte ranges (RFC 9110 section 14) and the
Content-Disposition of a download (RFC 6266). Pure functions."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = [
    "FILE_CONTENT_SECURITY_POLICY",
    "INLINE_TYPES",
    "Unsatisfiable",
    "content_disposition",
    "parse_range",
    "sniff_image",
]

# Every response about an artifact's bytes, errors included, is a sandbox (S12).
FILE_CONTENT_SECURITY_POLICY = "sandbox; default-src 'none'; img-src 'self'"
# Raster images a browser may show inline; anything else (HTML, SVG, PDF, ...) downloads.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# At most 19 digits (int64): longer numbers are malformed, not a reason to parse 4,000.
_RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


class Unsatisfiable(Exception):
    """A syntactically valid range that lies outside the file: 416."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for a single byte range; None means "send it all" (no
    header, a malformed one, or several ranges: RFC 9110 lets a server ignore those)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if first and last and int(last) < int(first):
        return None  # invalid: ignored
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if start >= size:
        raise Unsatisfiable  # also every range of an empty file
    return start, min(int(last) + 1, size) if last else size


def sniff_image(head: bytes) -> str | None:
    """The raster type the first bytes prove, or None: only proven types show inline."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _basename(name: str) -> str:
    """The last part of a name that may look like a path (metadata only, never a path)."""
    return re.split(r"[/\\]", name)[-1] or "artifact"


def content_disposition(name: str, *, inline: bool) -> str:
    """``attachment`` (or ``inline``) with an ASCII ``filename`` and the exact UTF-8 name
    in ``filename*``; quotes, controls and separators cannot break out of the header."""
    base = _basename(name)
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()+,=@\[\]-]", "_", ascii_name).strip(" .") or "artifact"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"
