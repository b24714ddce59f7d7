"""TensorBoard's own origin: the ASGI application of the server's second listener.

- ``GET /enter`` serves a page that takes the ticket from the URL fragment and posts it;
  ``POST /enter`` (same-origin only) redeems it and sets the cookie of that instance.
- ``/tb/<id>/…`` is forwarded to the instance's Unix socket when the request carries that
  instance's cookie for its owner; anything else is a 404 that says nothing about which
  instances exist. Only GET, HEAD and POST; POST only from this origin (TensorBoard has no
  CSRF defense of its own); bodies bounded; a slow TensorBoard is a 503.
- ``/font-roboto/<name>.woff2``, which TensorBoard's page asks for at the origin's root
  whatever its ``--path_prefix``, is forwarded to the first instance whose cookie the
  request carries: a visitor without one gets the same 404 as before.
- Headers are forwarded from an allow-list: never ``Cookie``, ``Authorization`` or
  ``X-Forwarded-*``. Responses lose ``Set-Cookie`` and gain ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

import httpx
from anyio import to_thread

from safeboard.tensorboards.supervisor import Instance, Supervisor
from safeboard.tensorboards.tickets import Tickets, cookie_name

__all__ = ["ENTER_PATH", "ROOT_FONTS", "SAME_ORIGIN_ENTER_PATH", "TensorboardOrigin"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_FORWARDED = frozenset(
    {
        b"accept", b"accept-encoding", b"accept-language", b"cache-control",
        b"content-type", b"if-modified-since", b"if-none-match", b"range", b"user-agent",
    }
)  # fmt: skip
_DROPPED_BACK = frozenset(
    {b"set-cookie", b"connection", b"keep-alive", b"transfer-encoding", b"server"}
)
ROOT_FONTS = "/font-roboto/"  # where TensorBoard's page asks for its fonts
_ROOT_FONT = re.compile(re.escape(ROOT_FONTS) + r"[A-Za-z0-9_-]+\.woff2")
_REAP_SECONDS = 30.0
_RECHECK_SECONDS = 30.0

_ENTER_SCRIPT = (
    "(async()=>{const p=new URLSearchParams(location.hash.slice(1));"
    "const t=p.get('ticket')||'';history.replaceState(null,'',location.pathname);"
    "const r=await fetch(location.pathname,{method:'POST',body:t,credentials:'same-origin',"
    "headers:{'Content-Type':'text/plain'}});"
    "if(r.ok){location.replace((await r.json()).location)}else{"
    "document.getElementById('m').textContent='This link was used or has expired: "
    "run safeboard tensorboard again, or open TensorBoard from the dashboard.'}})()"
)
_ENTER_HASH = base64.b64encode(hashlib.sha256(_ENTER_SCRIPT.encode()).digest()).decode()
_ENTER_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>TensorBoard</title></head>"
    f"<body><p id=m>Opening TensorBoard…</p><script>{_ENTER_SCRIPT}</script></body></html>"
).encode()
_ENTER_CSP = (
    f"default-src 'none'; script-src 'sha256-{_ENTER_HASH}'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
ENTER_PATH = "/enter"  # on TensorBoard's own origin
SAME_ORIGIN_ENTER_PATH = "/tb/enter"  # under /tb/ of safeboard's origin (same-origin mode)
_NOT_FOUND = (
    b'{"error": {"code": "not_found", "message": "not found, or your TensorBoard link has '
    b'expired: run `safeboard tensorboard` again"}}'
)


class TensorboardOrigin:
    def __init__(
        self,
        supervisor: Supervisor,
        tickets: Tickets,
        *,
        secure: bool,
        still_allowed: Callable[[Instance], bool] = lambda _instance: True,
        recheck_seconds: float = _RECHECK_SECONDS,
        enter_path: str = ENTER_PATH,
    ) -> None:
        """``still_allowed``: asked (off the event loop) at entry and at most every
        ``recheck_seconds`` per instance after: a disabled or demoted account loses its
        instances, and a revoked grant the instances over that project's runs."""
        self.supervisor = supervisor
        self._still_allowed = still_allowed
        self._checked: dict[str, float] = {}
        self._recheck = recheck_seconds
        self.tickets = tickets
        self.secure = secure
        self.enter_path = enter_path
        self.settings = supervisor.settings
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._reaped = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan goes to the main application
        path: str = scope["path"]
        method: str = scope["method"]
        if path == self.enter_path:
            if method == "GET":
                await _respond(send, 200, _ENTER_PAGE, b"text/html; charset=utf-8", csp=_ENTER_CSP)
            elif method == "POST" and self._same_origin(scope):
                await self._enter(receive, send)
            else:
                await _error(send, 403, "forbidden", "cross-origin entry refused")
            return
        routed = await self._route(scope)
        if routed is None:
            await _respond(send, 404, _NOT_FOUND, b"application/json")
            return
        instance, target = routed
        if method not in ("GET", "HEAD", "POST"):
            await _error(send, 405, "method_not_allowed", "only GET, HEAD and POST")
            return
        if method == "POST" and not self._same_origin(scope):
            await _error(send, 403, "forbidden", "cross-origin request refused")
            return
        await self._forward(instance, target, scope, receive, send)

    async def _route(self, scope: Scope) -> tuple[Instance, str] | None:
        """The instance a request may reach and the path to ask it for: its path's
        instance, or for a font at the root the first instance, each only with that
        instance's cookie for its owner (None otherwise: one 404 for all the reasons)."""
        self._reap_now_and_then()
        path: str = scope["path"]
        if _ROOT_FONT.fullmatch(path):
            for candidate in self.supervisor.instances():
                if await self._admits(scope, candidate):
                    return candidate, candidate.prefix + path
            return None
        parts = path.split("/", 3)  # "", "tb", id, rest
        if len(parts) < 3 or parts[1] != "tb":
            return None
        instance = self.supervisor.get(parts[2])
        if instance is None or not await self._admits(scope, instance):
            return None
        raw: bytes | None = scope.get("raw_path")
        return instance, raw.decode("latin-1") if raw else path

    async def _admits(self, scope: Scope, instance: Instance) -> bool:
        """Whether the request carries ``instance``'s cookie for its owner, who may still
        see it."""
        value = _cookies(scope).get(cookie_name(instance.id, secure=self.secure))
        if value is None or self.tickets.check(value, instance.id) != instance.owner_id:
            return False
        return await self._standing(instance)

    async def _standing(self, instance: Instance, *, fresh: bool = False) -> bool:
        now = time.monotonic()
        checked = self._checked.get(instance.id)
        if not fresh and checked is not None and now - checked < self._recheck:
            return True
        if not await to_thread.run_sync(self._still_allowed, instance):
            self._checked.pop(instance.id, None)
            return False
        self._checked[instance.id] = now
        return True

    def _same_origin(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        origin, host = headers.get(b"origin"), headers.get(b"host")
        scheme = b"https" if self.secure else b"http"
        return origin is not None and host is not None and origin == scheme + b"://" + host

    async def _enter(self, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, 512)
        entry = self.tickets.redeem(body.decode("ascii", "replace").strip()) if body else None
        instance = self.supervisor.get(entry.instance_id) if entry else None
        if (
            entry is None
            or instance is None
            or instance.owner_id != entry.user_id
            or not await self._standing(instance, fresh=True)
        ):
            await _error(send, 404, "not_found", "this link was used or has expired")
            return
        name = cookie_name(instance.id, secure=self.secure)
        cookie = (
            f"{name}={self.tickets.cookie(entry)}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={self.tickets.cookie_seconds}" + ("; Secure" if self.secure else "")
        )
        location = json.dumps({"location": f"{instance.prefix}/"}).encode()
        await _respond(
            send, 200, location, b"application/json", extra=[(b"set-cookie", cookie.encode())]
        )

    async def _forward(
        self, instance: Instance, target: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        instance.touch()
        limit = self.settings.max_body_bytes
        body = await _read_body(receive, limit + 1)
        if len(body) > limit:
            await _error(send, 413, "payload_too_large", f"bodies are limited to {limit} bytes")
            return
        headers = [(k, v) for k, v in scope["headers"] if k in _FORWARDED]
        headers.append((b"host", b"tensorboard"))
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        client = self._client(instance)
        request = client.build_request(scope["method"], target, headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            await _error(send, 503, "unavailable", "TensorBoard did not answer in time")
            return
        except httpx.TransportError:
            await _error(send, 503, "unavailable", "TensorBoard is not answering")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": self._response_headers(scope, response),
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.TransportError:
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    def _response_headers(
        self, scope: Scope, response: httpx.Response
    ) -> list[tuple[bytes, bytes]]:
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROPPED_BACK]
        headers += _guard_headers(self.secure)
        if "/data/" in scope["path"]:
            headers.append((b"cache-control", b"no-store"))
        return headers

    def _client(self, instance: Instance) -> httpx.AsyncClient:
        client = self._clients.get(instance.id)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=str(instance.socket_path))
            timeout = httpx.Timeout(self.settings.upstream_timeout_seconds, connect=5.0)
            client = httpx.AsyncClient(
                transport=transport, base_url="http://tensorboard", timeout=timeout
            )
            self._clients[instance.id] = client
        return client

    def _reap_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._reaped < _REAP_SECONDS:
            return
        self._reaped = now
        self.supervisor.reap()
        live = {i.id for i in self.supervisor.instances()}
        for gone in set(self._clients) - live:
            self._clients.pop(gone)  # its connections close with the dead socket
        for gone in set(self._checked) - live:
            self._checked.pop(gone)


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope["headers"]:
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001, S112  (a malformed cookie header: no cookie)
                continue
    return {name: morsel.value for name, morsel in jar.items()}


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    more = True
    while more and len(body) < limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body[:limit]


def _guard_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", b"frame-ancestors 'none'"),  # with TensorBoard's own
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if secure:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    csp: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"cache-control", b"no-store")]
    headers += _guard_headers(secure=False)
    if csp is not None:
        headers.append((b"content-security-policy", csp.encode()))
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await _respond(send, status, body, b"application/json")
