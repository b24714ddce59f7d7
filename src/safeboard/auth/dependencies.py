"""FastAPI dependencies every route uses to declare its authorization decision (S9).

A route either depends on ``requires(Permission.X)`` or carries ``PUBLIC``; a test walks
every route of the app and fails on one with neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from safeboard.auth.authorizer import could_reach, credential_refusal, ensure
from safeboard.auth.binding import BINDING_HEADER, cookie_name
from safeboard.auth.csrf import UNSAFE_METHODS, check_session_csrf, check_sign_in_origin
from safeboard.auth.identity import IdentityChain, Presented
from safeboard.auth.permissions import CredentialKind, Permission
from safeboard.auth.principal import Principal
from safeboard.hosts import is_loopback_host
from safeboard.provision import provided, provided_by
from safeboard.settings import Settings

__all__ = [
    "DECISION_ATTRIBUTE",
    "PUBLIC",
    "CookiePolicy",
    "RequestAuth",
    "SessionCsrf",
    "auth_context",
    "client_address",
    "current_principal",
    "own_origin",
    "public_origin",
    "reachable_by_others",
    "requires",
    "requires_project",
    "session_cookie",
    "sign_in_guard",
]

DECISION_ATTRIBUTE = "__safeboard_decision__"


@dataclass(frozen=True)
class CookiePolicy:
    """``__Host-safeboard-<port>`` (Secure, no Domain, Path=/) under TLS or a trusted
    HTTPS proxy; ``safeboard-<port>`` on plain loopback HTTP, where a Secure cookie would
    never be sent back. The port is the one the browser addressed (auth/binding.py)."""

    secure: bool
    max_age: int

    def name(self, request: Request) -> str:
        try:
            port = urlsplit(own_origin(request)).port
        except ValueError:  # a Host header whose port is not a number
            port = None
        default = 443 if request.url.scheme == "https" else 80
        return cookie_name(secure=self.secure, port=port or default)


class SessionCsrf(Protocol):
    def csrf_token(self, session_id: str) -> str:
        """The CSRF token a session's unsafe requests must send."""
        ...


@dataclass(frozen=True)
class RequestAuth:
    """What these dependencies need of the request's app: the identity chain, the CSRF
    token of a session and the cookie policy. The accounts domain supplies the parts (its
    identity providers and session service); the composition root
    (``safeboard.services``) assembles it; this mechanism knows no domain."""

    identity: IdentityChain
    auth: SessionCsrf
    cookie: CookiePolicy


def auth_context(request: Request) -> RequestAuth:
    return provided_by(request.app, RequestAuth)


def client_address(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client else ""


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it (Host was checked by the middleware)."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def public_origin(request: Request) -> str:
    """The address to hand to others (invitation links, ``safeboard login`` hints): the
    ``server.public_url`` setting, else the origin this request came to."""
    return provided_by(request.app, Settings).server.public_url or own_origin(request)


def reachable_by_others(request: Request) -> bool:
    """Whether other machines can reach this server (a public URL, a reverse proxy in
    front, or a bind off loopback): else a login hint for "any other machine" is one that
    no other machine could use."""
    server = provided_by(request.app, Settings).server
    return bool(server.public_url or server.behind_proxy) or not is_loopback_host(server.host)


def session_cookie(request: Request) -> str | None:
    """The session cookie's value, if the request carries one."""
    return request.cookies.get(auth_context(request).cookie.name(request))


async def current_principal(
    request: Request, context: RequestAuth = provided(RequestAuth)
) -> Principal:
    """Who is asking; cookie-authenticated unsafe requests must pass the CSRF checks.
    A credential the chain remembers is answered on the event loop; any other is looked
    up in a worker thread (the database). Each thread hop costs a sweep's server about as
    much as the work it carries (P9), and every route depends on this."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    cookie = request.cookies.get(context.cookie.name(request))
    presented = Presented(
        authorization=request.headers.get("authorization"),
        session_cookie=cookie,
        binding=request.headers.get(BINDING_HEADER),
        address=client_address(request),
    )
    principal = context.identity.remembered(presented)
    if principal is None:
        principal = await run_in_threadpool(context.identity.identify, presented)
    if principal.credential is CredentialKind.SESSION and request.method in UNSAFE_METHODS:
        assert cookie is not None  # noqa: S101  (a session principal came from the cookie)
        check_session_csrf(
            token=request.headers.get("x-csrf-token"),
            expected=context.auth.csrf_token(cookie),
            origin=request.headers.get("origin"),
            referer=request.headers.get("referer"),
            own_origin=own_origin(request),
        )
    request.state.principal = principal
    return principal


def requires(permission: Permission) -> Any:
    """Depend on this to require ``permission``; the handler receives the principal."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        ensure(principal, permission)  # no I/O: on the event loop, no thread hop
        return principal

    setattr(check, DECISION_ATTRIBUTE, permission)
    return Depends(check)


def requires_project(permission: Permission) -> Any:
    """For project-scoped routes: the credential must be able to carry ``permission`` at
    all (type, scope, project restriction checked later); the grant in the particular
    project is checked by the use case, which knows the project."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        if not could_reach(principal, permission):
            raise credential_refusal(principal, permission)
        return principal

    setattr(check, DECISION_ATTRIBUTE, permission)
    return Depends(check)


def _public() -> None:
    """Marks a route as deliberately public (health, sign-in, pages, static assets)."""


setattr(_public, DECISION_ATTRIBUTE, "public")
PUBLIC = Depends(_public)


def sign_in_guard(request: Request) -> None:
    """Login-CSRF defence for the sign-in endpoints (public by nature)."""
    check_sign_in_origin(
        origin=request.headers.get("origin"),
        referer=request.headers.get("referer"),
        fetch_site=request.headers.get("sec-fetch-site"),
        content_type=request.headers.get("content-type"),
        own_origin=own_origin(request),
    )


setattr(sign_in_guard, DECISION_ATTRIBUTE, "public")


def decision_of(call: Callable[..., Any]) -> object | None:
    return getattr(call, DECISION_ATTRIBUTE, None)
