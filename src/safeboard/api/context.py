"""Per-request context: a request id, a redacted access log line, and the last word on
unexpected exceptions (a generic 500 for the client, the traceback for the server log)."""

from __future__ import annotations

import logging
import random
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safeboard.api.errors import error_response
from safeboard.redaction import redact_path, redact_query

__all__ = ["RequestContextMiddleware"]

access_log = logging.getLogger("safeboard.access")
error_log = logging.getLogger("safeboard.errors")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A label for log lines, no secret: from the process's generator in memory (reseeded
        # after a fork). secrets.token_hex asked the kernel each time, a system call that
        # let go of the interpreter lock: 3% of a sweep's server time (P9).
        request_id = f"{random.getrandbits(64):016x}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error in request %s", request_id)
            if status:
                raise  # the response has begun; the server closes the connection
            response = error_response(
                "internal",
                "internal server error; quote this request id to the operator",
                request_id,
            )
            await response(scope, receive, send_with_id)
        finally:
            self._log(scope, status, sent, time.perf_counter() - started, request_id)

    @staticmethod
    def _log(scope: Scope, status: int, sent: int, seconds: float, request_id: str) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        query = redact_query(scope.get("query_string", b"").decode("latin-1"))
        # The path as sent (percent-encoded): a decoded %0a could forge a second log line.
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        target = redact_path(raw.decode("latin-1")) + (f"?{query}" if query else "")
        access_log.info(
            '%s "%s %s" %d %d %.1fms id=%s',
            address,
            scope.get("method", "-"),
            target,
            status,
            sent,
            seconds * 1000,
            request_id,
        )
