"""One JSON error shape for every failure: ``{"error": {"code", "message", "request_id"}}``.

One exception: a browser's navigation (GET, Accept: text/html) to an address outside
``/api/`` that names nothing gets the dashboard's HTML "Not found" page (status 404).

Expected errors (``SafeboardError``) show their message; anything else becomes a generic 500
whose details go only to the server log, under the same request id (S17). Infrastructure
faults (a database down or busy, a full disk: api/faults.py) and every other
``ServiceUnavailable`` are 503s with their own code, message and ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from safeboard.api.faults import FaultLog, install_fault_handlers
from safeboard.errors import STATUS_BY_CODE, ProjectMoved, SafeboardError, ServiceUnavailable
from safeboard.validation import describe
from safeboard.web.responses import error_page, moved_location, wants_html

__all__ = ["GENERIC_500", "error_body", "error_response", "install_error_handlers", "request_id_of"]

log = logging.getLogger("safeboard.errors")

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}

GENERIC_500 = "internal server error; quote this request id to the operator"

_MESSAGES = {
    404: "no such resource",
    405: "method not allowed on this resource",
}


def request_id_of(scope_or_request: Any) -> str:
    """The id the request-context middleware gave this request ("-" outside one)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return str(scope.get("state", {}).get("request_id", "-"))


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(
    code: str, message: str, request_id: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    status = STATUS_BY_CODE.get(code, 500)
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)


def _unavailable(request: Request, exc: ServiceUnavailable) -> Response:
    """503 with the error's own code, message (safe by construction) and Retry-After; a
    browser's navigation to a page gets it as a page."""
    request_id = request_id_of(request)
    if _browsing(request):
        page = error_page(503, exc.message, request_id)
        page.headers.update(exc.headers)
        return page
    response = error_response(exc.code, exc.message, request_id, headers=exc.headers)
    response.status_code = 503
    return response


def _on_safeboard_error(faults: FaultLog) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def on_safeboard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SafeboardError)  # noqa: S101  (registered for this type only)
        if isinstance(exc, ServiceUnavailable):
            faults.record(exc.code, exc.message)
            return _unavailable(request, exc)
        return _safeboard_error(request, exc)

    return on_safeboard_error


def _safeboard_error(request: Request, exc: SafeboardError) -> Response:
    request_id = request_id_of(request)
    if isinstance(exc, ProjectMoved):  # 308 to the renamed project, or 404 as before
        location = moved_location(request, exc)
        if location is None:
            return error_response("not_found", "no such project", request_id)
        return error_response(exc.code, exc.message, request_id, headers={"Location": location})
    if STATUS_BY_CODE.get(exc.code, 500) >= 500:
        # A server-side problem: its message (paths, names) is for the operator only.
        log.error("request %s failed: %s", request_id, exc.message)
        return error_response(exc.code, GENERIC_500, request_id)
    return error_response(exc.code, exc.message, request_id, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    return error_response("invalid_request", describe(exc.errors()), request_id_of(request))


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = iterate(request.app.routes) if iterate else request.app.routes
    methods: set[str] = set()
    for route in routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _browsing(request: Request) -> bool:
    """A browser's navigation to a page address (not the API): it gets an HTML page."""
    return (
        request.method in ("GET", "HEAD")
        and wants_html(request)
        and not request.url.path.startswith(("/api/", "/static/"))
    )


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    if exc.status_code == 404 and _browsing(request):
        return error_page(404, "There is no page at this address.", request_id_of(request))
    code = _CODE_BY_STATUS.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal"
    )
    message = _MESSAGES.get(exc.status_code) or str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    response = error_response(code, message, request_id_of(request), headers=headers)
    response.status_code = exc.status_code
    return response


def install_error_handlers(app: FastAPI) -> None:
    faults = FaultLog()  # one per app: its 503s, counted per cause
    app.add_exception_handler(SafeboardError, _on_safeboard_error(faults))
    install_fault_handlers(app, faults, _unavailable)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
