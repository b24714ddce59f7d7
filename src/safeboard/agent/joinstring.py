"""The join string an admin hands to a GPU machine:
``sbjoin1.<token id>.<secret>.<CA pin>@<server URL>``.

The pin is the SHA-256 of the server CA's SubjectPublicKeyInfo, base64url without padding
(kubeadm's ``--discovery-token-ca-cert-hash``): the agent checks the server against it
before it sends the secret (S13). It is empty only for a plain-HTTP server on loopback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from safeboard.errors import BadRequest

__all__ = ["JOIN_PREFIX", "JoinString", "parse_join_string"]

JOIN_PREFIX = "sbjoin1"
_FORM = re.compile(
    r"sbjoin1\.(?P<id>[0-9a-f]{12})\.(?P<secret>[A-Za-z0-9_-]{32,64})"
    r"\.(?P<pin>[A-Za-z0-9_-]{43})?@(?P<url>https?://\S+)"
)
_HELP = (
    "a join string reads sbjoin1.<id>.<secret>.<pin>@https://host:port, as "
    "`safeboard agent token` prints it: copy it whole, in single quotes"
)


@dataclass(frozen=True)
class JoinString:
    token_id: str
    secret: str
    pin: str  # "" for a plain-HTTP server on loopback
    url: str

    @property
    def token(self) -> str:
        """What enrollment sends: ``<id>.<secret>`` (never the URL or the pin)."""
        return f"{self.token_id}.{self.secret}"

    def __repr__(self) -> str:
        return f"JoinString(token_id={self.token_id!r}, url={self.url!r}, secret='**********')"


def parse_join_string(text: str) -> JoinString:
    """The parts of a join string; BadRequest (saying what one looks like) otherwise. The
    message never repeats the text: it holds a secret."""
    match = _FORM.fullmatch(text.strip())
    if match is None:
        raise BadRequest(f"not a join string: {_HELP}")
    url = match.group("url").rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise BadRequest(f"not a join string (its server address is malformed): {_HELP}") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment:
        raise BadRequest(f"not a join string (its server address is malformed): {_HELP}")
    pin = match.group("pin") or ""
    if parts.scheme == "https" and not pin:
        raise BadRequest("this join string has no CA pin for an https server: ask for a new one")
    if parts.scheme == "http" and pin:
        raise BadRequest("this join string pins a CA but names a plain http:// server")
    return JoinString(match.group("id"), match.group("secret"), pin, url)
