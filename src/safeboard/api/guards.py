"""Requests refused before any route sees them: unknown Host names (DNS rebinding, S1),
bodies over the size limit (413 before the body is read, S17) and JSON bodies holding text
no database can store (422, S17)."""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_plus

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safeboard.api.errors import error_response, request_id_of
from safeboard.errors import PayloadTooLarge
from safeboard.text import body_problem

__all__ = [
    "BodyLimitMiddleware",
    "ControlCharacterMiddleware",
    "HostCheckMiddleware",
    "JsonTextMiddleware",
    "QueryCredentialMiddleware",
    "host_name",
]

# Query parameters that would carry a credential (S8): refused outright, never used.
CREDENTIAL_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "session",
        "sessionid",
        "password",
        "auth",
        "authorization",
        "bearer",
        "jwt",
        "secret",
        "csrf_token",
    }
)
# An API key's start: sb_ and its 12-hex id (auth/tokens.py). Not any sb_<hex>_: metric
# keys travel in the query (?metric=), and sb_1_loss is a metric, not a credential.
_API_KEY_SHAPE = re.compile(r"sb_[0-9a-f]{12}_")


_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._\-]+))(?::[0-9]{1,5})?")


def host_name(host_header: str) -> str:
    """The name in a Host header: port dropped, IPv6 brackets dropped, case-folded, no
    trailing dot; "" for anything that is not a well-formed host[:port]."""
    match = _HOST.fullmatch(host_header.strip().lower())
    if match is None:
        return ""
    return (match.group("ipv6") or match.group("name")).rstrip(".")


def _matches(name: str, allowed: frozenset[str]) -> bool:
    """Exact names, and ``*.example.org`` entries matching exactly one more label."""
    if name in allowed:
        return True
    head, dot, rest = name.partition(".")
    return bool(head and dot and f"*.{rest}" in allowed)


class HostCheckMiddleware:
    """Answer only to the names this server is known by; anything else gets 400."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(name.strip("[]").lower().rstrip(".") for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((v for k, v in scope["headers"] if k == b"host"), None)
            name = host_name(header.decode("latin-1")) if header is not None else ""
            if not name or not _matches(name, self.allowed):
                response = error_response(
                    "bad_request",
                    "unknown Host header; add the name to server.allowed_hosts or --tls-san",
                    request_id_of(scope),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterMiddleware:
    """400 for a URL whose path or query holds a control character once decoded (a NUL
    byte, say): no name, id or filter contains one, and PostgreSQL refuses NUL in text
    with an error that would otherwise surface as a 500 (S17)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            if _CONTROL.search(scope["path"]) or _CONTROL.search(query):
                response = error_response(
                    "bad_request", "the URL holds a control character", request_id_of(scope)
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class QueryCredentialMiddleware:
    """400 for a request that carries a credential in its URL (S8, ASVS 14.2.1): URLs end up
    in logs, proxies and browser history. The access log redacts it as well."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            raw = scope["query_string"].decode("latin-1")
            query = unquote_plus(raw)
            # Names split before decoding: a value such as a metric key "a&key=b" (sent
            # as a%26key%3Db) is one value, not a parameter named "key".
            parts = re.split(r"[&;]", raw)
            names = {unquote_plus(part.split("=", 1)[0]).strip().lower() for part in parts}
            if names & CREDENTIAL_PARAMS or _API_KEY_SHAPE.search(query):
                response = error_response(
                    "bad_request",
                    "credentials go in the Authorization header, never in the URL",
                    request_id_of(scope),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: by Content-Length at once, else while streaming.

    A chunked body that crosses the limit makes ``receive`` raise; whatever the route then
    answers (frameworks turn a failed body read into 400) is replaced by the 413.
    ``own_limit`` matches the paths of PUT routes that stream their body to disk and hold
    it to a limit of their own (artifact uploads: the declared size).
    """

    def __init__(
        self, app: ASGIApp, *, limit: int, own_limit: re.Pattern[str] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.own_limit = own_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.own_limit is not None
            and scope["method"] == "PUT"
            and self.own_limit.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            length = int(declared) if declared.isdigit() else -1
            if length < 0:
                response = error_response(
                    "bad_request", "invalid Content-Length", request_id_of(scope)
                )
                await response(scope, receive, send)
                return
            if length > limit:
                await self._too_large(scope, receive, send)
                return
        received = 0
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(f"request body larger than {limit} bytes")
            return message

        answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await self._too_large(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if not answered:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            "payload_too_large",
            f"request body larger than {self.limit} bytes",
            request_id_of(scope),
            headers={"connection": "close"},
        )
        await response(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI would parse this request's body as JSON (``application/json`` or
    ``application/*+json``; no Content-Type is not parsed: FastAPI's strict_content_type).
    Decided as FastAPI decides it, through ``email.message``: a header such as
    ``application/json\xa0``, which a bytes-level strip would not recognise, is JSON to it."""
    header = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    if not header:
        return False
    message = email.message.Message()
    message["content-type"] = header.decode("latin-1")
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class JsonTextMiddleware:
    """422 for a JSON body with a NUL character or a lone surrogate in any text, key or
    value, at any depth (``safeboard.text``): PostgreSQL cannot store either, and one rule
    here covers every field of every route, present and future. The body (already held
    to the size limit by ``BodyLimitMiddleware``, outside this one) is read whole, checked,
    and replayed to the route unchanged. ``skip`` matches the paths that stream their body
    under a limit of their own (artifact uploads): never read whole, never JSON. A request
    that no route takes (``routes``: the app's) goes on to get its 404 or 405."""

    def __init__(
        self, app: ASGIApp, *, routes: Sequence[BaseRoute], skip: re.Pattern[str] | None = None
    ) -> None:
        self.app = app
        self.routes = routes
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not _is_json(scope)
            or (self.skip is not None and self.skip.match(scope["path"]))
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        problem = body_problem(b"".join(chunks))
        if problem is not None and any(
            route.matches(scope)[0] is Match.FULL for route in self.routes
        ):
            response = error_response("invalid_request", problem, request_id_of(scope))
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
