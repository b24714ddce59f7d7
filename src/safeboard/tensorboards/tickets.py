"""Entry into TensorBoard's origin: one-time tickets, then a cookie for that origin alone.

A ticket is minted for one user and one instance (by the CLI through the server, or by the
main origin for a signed-in user) and travels in a URL fragment, so it never reaches a log
or a ``Referer``. Redeemed once, it yields a cookie bound to the user and the instance,
signed with a key that lives only in this server process: instances and cookies end with
the process. Tickets are kept as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["Entry", "Tickets", "cookie_name"]

TICKET_SECONDS = 15 * 60  # like the startup link


def cookie_name(instance_id: str, *, secure: bool) -> str:
    """One cookie per instance; ``__Host-`` (Secure, Path=/, no Domain) under TLS."""
    return f"{'__Host-' if secure else ''}sbtb-{instance_id}"


@dataclass(frozen=True)
class Entry:
    user_id: int
    username: str
    instance_id: str


class Tickets:
    def __init__(self, cookie_seconds: int) -> None:
        self.cookie_seconds = cookie_seconds
        self._key = secrets.token_bytes(32)
        self._tickets: dict[bytes, tuple[Entry, float]] = {}
        self._lock = threading.Lock()

    def mint(self, entry: Entry) -> str:
        ticket = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._tickets = {d: v for d, v in self._tickets.items() if v[1] > now}
            self._tickets[_digest(ticket)] = (entry, now + TICKET_SECONDS)
        return ticket

    def redeem(self, ticket: str) -> Entry | None:
        """The ticket's entry, once; None for an unknown, used or expired ticket."""
        with self._lock:
            found = self._tickets.pop(_digest(ticket), None)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def cookie(self, entry: Entry) -> str:
        expires = int(time.time()) + self.cookie_seconds
        body = f"{entry.user_id}.{entry.instance_id}.{expires}"
        return f"{body}.{self._sign(body)}"

    def check(self, value: str, instance_id: str) -> int | None:
        """The user id a cookie was issued to for ``instance_id``; None when it is not
        this process's, is for another instance, or has expired."""
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        user, _, rest = body.partition(".")
        instance, _, expires = rest.partition(".")
        if instance != instance_id or not expires.isdigit() or int(expires) < time.time():
            return None
        return int(user) if user.isdigit() else None

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()
