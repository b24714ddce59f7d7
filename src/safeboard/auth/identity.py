"""The identity chain: each provider looks at the presented credentials and returns a
principal, or None ("not mine"), or raises Unauthenticated ("mine, and invalid").

A request that sends ``Authorization`` is judged by that header alone: a bearer request
never falls back to a cookie (which is what exempts it from CSRF checks, S7). A session
cookie counts only together with its session's binding header (auth/binding.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from safeboard.auth.authorizer import new_key_hint
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidApiKey, Unauthenticated

__all__ = [
    "INVALID_KEY",
    "NEW_KEY",
    "IdentityChain",
    "IdentityProvider",
    "Presented",
    "unauthenticated",
]

NEW_KEY = f"get a new one: {new_key_hint('write')}"
INVALID_KEY = (
    "invalid API key (unknown, mistyped, or its account is disabled): check "
    f"SAFEBOARD_API_KEY, or {NEW_KEY}"
)


def unauthenticated(message: str, kind: type[Unauthenticated] = Unauthenticated) -> Unauthenticated:
    """A 401 that names the scheme to use (every provider refuses with it)."""
    return kind(message, headers={"WWW-Authenticate": 'Bearer realm="safeboard"'})


@dataclass(frozen=True)
class Presented:
    """The credentials a request carries, and from where."""

    authorization: str | None
    session_cookie: str | None
    binding: str | None  # X-Safeboard-Binding: the cookie counts only with it
    address: str

    def __repr__(self) -> str:
        return (
            f"Presented(address={self.address!r}, authorization=..., session_cookie=..., "
            "binding=...)"
        )

    @property
    def bearer(self) -> str | None:
        if self.authorization is None:
            return None
        scheme, _, value = self.authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class IdentityProvider(Protocol):
    """One kind of credential (the accounts domain provides the API key and session
    cookie providers: ``accounts/api_keys.py``, ``accounts/sessions.py``); a new kind, such
    as an agent's credential, is one more provider in the chain ``create_app`` builds."""

    def identify(self, presented: Presented) -> Principal | None: ...

    def remembered(self, presented: Presented) -> Principal | None:
        """The principal if this provider can vouch for the credentials from memory
        alone (no I/O, never raises); None sends the request to ``identify``."""
        ...


class IdentityChain:
    def __init__(self, providers: Sequence[IdentityProvider]) -> None:
        self.providers = tuple(providers)

    def remembered(self, presented: Presented) -> Principal | None:
        """A principal answered from the providers' memory without I/O, or None: then
        ``identify`` decides (which may look in the database, or refuse)."""
        if presented.authorization is not None and presented.bearer is None:
            return None
        for provider in self.providers:
            principal = provider.remembered(presented)
            if principal is not None:
                return principal
        return None

    def identify(self, presented: Presented) -> Principal:
        if presented.authorization is not None and presented.bearer is None:
            raise unauthenticated("send credentials as Authorization: Bearer <API key>")
        for provider in self.providers:
            principal = provider.identify(presented)
            if principal is not None:
                return principal
        if presented.bearer is not None:
            raise unauthenticated(INVALID_KEY, InvalidApiKey)
        raise unauthenticated("sign in, or send an API key as Authorization: Bearer <key>")
