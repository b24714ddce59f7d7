"""Security headers on every response (S11)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safeboard.artifacts.ranges import FILE_CONTENT_SECURITY_POLICY

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HSTS",
    "SecurityHeadersMiddleware",
]

# No inline script, no eval, nothing from elsewhere; the dashboard ships its own files.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "worker-src 'self'",  # /sw.js, the service worker that sends the session binding
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HSTS = "max-age=63072000"  # two years (Mozilla's value); no includeSubDomains: not our domain

_ALWAYS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
)

# Static assets may be cached; everything else (API, auth, pages with data) may not.
_CACHEABLE_PREFIXES = ("/static/",)
_FILE_PREFIXES = ("/files/", "/api/v1/artifacts/")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(_CACHEABLE_PREFIXES)
        file_route = scope["path"].startswith(_FILE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if file_route:
                    headers["content-security-policy"] = FILE_CONTENT_SECURITY_POLICY
                for name, value in _ALWAYS:
                    headers.setdefault(name, value)
                # Under our TLS, or behind a trusted proxy that said the client used HTTPS.
                if self.tls or scope.get("scheme") == "https":
                    headers["strict-transport-security"] = HSTS
                if not cacheable:
                    headers["cache-control"] = "no-store"
                if "server" in headers:
                    del headers["server"]
            await send(message)

        await self.app(scope, receive, send_with_headers)
