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

from safeboard.accounts.api_keys import INVALID_KEY, ApiKeyService
from safeboard.accounts.sessions import AuthService, unauthenticated
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidApiKey

__all__ = [
    "ApiKeyProvider",
    "IdentityChain",
    "IdentityProvider",
    "Presented",
    "SessionCookieProvider",
]


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
    def identify(self, presented: Presented) -> Principal | None: ...


class ApiKeyProvider:
    def __init__(self, keys: ApiKeyService) -> None:
        self.keys = keys

    def identify(self, presented: Presented) -> Principal | None:
        token = presented.bearer
        if token is None or not token.startswith("sb_"):
            return None
        return self.keys.principal(token, presented.address)


class SessionCookieProvider:
    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    def identify(self, presented: Presented) -> Principal | None:
        if presented.authorization is not None or not presented.session_cookie:
            return None
        return self.auth.session_principal(presented.session_cookie, presented.binding)


class IdentityChain:
    def __init__(self, providers: Sequence[IdentityProvider]) -> None:
        self.providers = tuple(providers)

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
