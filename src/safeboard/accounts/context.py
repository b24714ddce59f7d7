"""What the accounts routes take from the app: the services behind sign-in and API keys,
with the identity chain and cookie policy the request dependencies use
(``auth.dependencies.RequestAuth``, which this satisfies)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from safeboard.accounts.api_keys import ApiKeyService
from safeboard.accounts.sessions import AuthService, SignInContext
from safeboard.auth.dependencies import CookiePolicy, client_address
from safeboard.auth.identity import IdentityChain

__all__ = ["AuthContext", "sign_in_context"]


@dataclass(frozen=True)
class AuthContext:
    identity: IdentityChain
    auth: AuthService
    keys: ApiKeyService
    cookie: CookiePolicy


def sign_in_context(request: Request) -> SignInContext:
    return SignInContext(
        address=client_address(request), user_agent=request.headers.get("user-agent", "")[:200]
    )
