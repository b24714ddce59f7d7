"""Cross-site request forgery defences (S7) and safe redirects.

Unsafe methods under cookie authentication need the session's CSRF token (header
``X-CSRF-Token``) and a same-origin ``Origin`` (or, without one, ``Referer``). Sign-in
endpoints have no session yet: they need a same-origin Origin when a browser sends one,
a JSON body (which a cross-site form cannot send), and no ``Sec-Fetch-Site: cross-site``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from safeboard.auth.tokens import tokens_equal
from safeboard.errors import Forbidden

__all__ = [
    "UNSAFE_METHODS",
    "check_session_csrf",
    "check_sign_in_origin",
    "safe_next",
    "same_origin",
]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def same_origin(value: str, own_origin: str) -> bool:
    """True if the URL ``value`` has exactly our scheme, host and port."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    if not parts.scheme or not parts.hostname:
        return False
    own = urlsplit(own_origin)
    default = {"http": 80, "https": 443}
    return (
        parts.scheme.lower() == own.scheme
        and parts.hostname.lower() == (own.hostname or "").lower()
        and (port or default.get(parts.scheme.lower())) == (own.port or default.get(own.scheme))
    )


def _origin_ok(origin: str | None, referer: str | None, own_origin: str, *, required: bool) -> bool:
    if origin is not None:
        return origin != "null" and same_origin(origin, own_origin)
    if referer is not None:
        return same_origin(referer, own_origin)
    return not required


def check_session_csrf(
    *, token: str | None, expected: str, origin: str | None, referer: str | None, own_origin: str
) -> None:
    if token is None or not tokens_equal(token, expected):
        raise Forbidden("missing or wrong CSRF token (send the X-CSRF-Token header)")
    if not _origin_ok(origin, referer, own_origin, required=True):
        raise Forbidden("cross-origin request refused")


def check_sign_in_origin(
    *,
    origin: str | None,
    referer: str | None,
    fetch_site: str | None,
    content_type: str | None,
    own_origin: str,
) -> None:
    if fetch_site is not None and fetch_site.lower() == "cross-site":
        raise Forbidden("cross-site sign-in refused")
    if not _origin_ok(origin, referer, own_origin, required=False):
        raise Forbidden("cross-origin sign-in refused")
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise Forbidden("sign-in takes a JSON body (Content-Type: application/json)")


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a same-origin path, or "/".

    Refuses anything a browser could read as another origin: scheme-relative
    (``//evil``), backslashes (``/\\evil``), control characters, and their percent-encoded
    forms (decoded repeatedly until stable, for the check only: the path is returned as
    given, so a query such as ``?filter=a%26b`` survives the sign-in).
    """
    if not value:
        return "/"
    decoded = value
    for _ in range(5):
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        return "/"
    if (
        not decoded.startswith("/")
        or decoded.startswith("//")
        or "\\" in decoded
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded)
    ):
        return "/"
    parts = urlsplit(decoded)
    if parts.scheme or parts.netloc:
        return "/"
    raw = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or raw.scheme or raw.netloc:
        return "/"
    return value  # as sent: its own percent-encoding (%26, %23, %2B) means what it meant
