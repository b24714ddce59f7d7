"""How pages answer: HTML for browsers, even when something goes wrong.

A browser that opens a page without a session is sent to the sign-in form (and back
afterwards); a missing run or a refused page is an HTML page with the right status.
Clients that do not ask for HTML get the API's JSON errors, as from every other route.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from safeboard.errors import STATUS_BY_CODE, ProjectMoved, SafeboardError, Unauthenticated
from safeboard.validation import describe
from safeboard.web.html import el
from safeboard.web.layout import document

__all__ = ["PageRoute", "error_page", "moved_location", "wants_html"]

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    503: "Unavailable for now",
}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_page(status: int, message: str, request_id: str = "-") -> HTMLResponse:
    title = _TITLES.get(status, "Something went wrong")
    body = el(
        "main",
        el("h1", title),
        el("p", message, class_="error", role="alert"),
        el("p", el("a", "Back to your projects", href="/")),
        el("p", f"Request id: {request_id}", class_="hint"),
        class_="card",
    )
    return HTMLResponse(document(title, body, body_class="center"), status_code=status)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


_NAME_PARAMS = ("name", "project")  # what page and API routes call a project's name


def moved_location(request: Request, exc: ProjectMoved) -> str | None:
    """The same route with the project's current name in place of the old one, path tail
    and query kept; None when the old name is not in the request's path (it came in a
    body or a query: then it is answered as no such project)."""
    template = getattr(request.scope.get("route"), "path_format", None)
    if template is None or not exc.new_name:
        return None
    slots = template.split("/")
    raw = request.scope.get("raw_path") or request.url.path.encode()
    segments = raw.decode("latin-1").split("/")
    if len(segments) < 2 or segments[1] == "":  # "//host/...": never a redirect off-site
        return None
    for key in _NAME_PARAMS:
        slot = f"{{{key}}}"
        if slot in slots and slots.index(slot) < len(segments):
            where = slots.index(slot)
            if unquote(segments[where]) == exc.old_name:
                segments[where] = quote(exc.new_name, safe="")
                query = request.url.query
                return "/".join(segments) + (f"?{query}" if query else "")
    return None


def _moved(request: Request, exc: ProjectMoved) -> Response:
    location = moved_location(request, exc)
    if location is None:
        return error_page(404, "no such project", _request_id(request))
    return RedirectResponse(location, status_code=308)


class PageRoute(APIRoute):
    """An APIRoute whose failures become pages for a browser (Accept: text/html). A page
    answers HEAD as GET (the server sends no body): link checkers and a renamed project's
    old links (308) get the same status as a browser."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = kwargs.get("methods")
        if methods is not None and "GET" in {m.upper() for m in methods}:
            kwargs["methods"] = {*methods, "HEAD"}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated:
                if wants_html(request):
                    return _login_redirect(request)
                raise
            except ProjectMoved as exc:  # a renamed project's old name: its new one
                if not wants_html(request):
                    raise
                return _moved(request, exc)
            except SafeboardError as exc:
                status = STATUS_BY_CODE.get(exc.code, 500)
                if not wants_html(request) or status >= 500:
                    raise
                return error_page(status, exc.message, _request_id(request))
            except RequestValidationError as exc:
                if not wants_html(request):
                    raise
                return _invalid_page(request, exc.errors())

        return page_handler


def _invalid_page(request: Request, errors: Sequence[Mapping[str, Any]]) -> HTMLResponse:
    """A page address whose id cannot name anything (``/tasks/abc``): 404 "no such task",
    as for an id nobody holds; anything else wrong (a query): 400 in plain words."""
    path = [e["loc"][-1] for e in errors if e.get("loc") and e["loc"][0] == "path"]
    if path:
        thing = {"name": "project"}.get(str(path[0]), str(path[0]).removesuffix("_id"))
        return error_page(404, f"no such {thing}", _request_id(request))
    return error_page(400, describe(errors), _request_id(request))


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))
