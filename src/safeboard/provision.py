"""Services by type: the one way a route (or a request dependency) reaches a service.

A route declares what it needs by type, as it declares its permission::

    def get_run(..., runs: RunService = provided(RunService)) -> RunOut: ...

and receives the instance the app was built with (``safeboard.services.Services``, one
frozen object per app, built once by ``build_services``). ``install`` attaches that object
to the app after the routes are registered and refuses, at app creation, a route that asks
for a type it does not provide; no request ever finds a service missing.

This module sits in the bottom layer so that every domain's routes can use it without
knowing the composition root above them; it is the only reader of the app's state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import fastapi.routing
from fastapi import Depends
from fastapi.dependencies.models import Dependant
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

__all__ = ["NotProvided", "Provider", "install", "provided", "provided_by", "provider_of"]

T = TypeVar("T")
_KIND_ATTRIBUTE = "__safeboard_provided__"


class NotProvided(LookupError):
    """A type asked for that the app's services do not hold (a programming error, raised
    when the app is put together)."""


class Provider(Protocol):
    """What the app holds: one instance per type (``safeboard.services.Services``)."""

    def provides(self, kind: type[Any]) -> bool: ...

    def get(self, kind: type[T]) -> T: ...


# One dependency per type: FastAPI then solves it once per request, however many
# dependencies of the request ask for it.
_DEPENDENCIES: dict[type[Any], Callable[[HTTPConnection], Awaitable[Any]]] = {}


def _dependency(kind: type[Any]) -> Callable[[HTTPConnection], Awaitable[Any]]:
    known = _DEPENDENCIES.get(kind)
    if known is not None:
        return known

    async def lookup(connection: HTTPConnection) -> Any:  # async: never takes a thread
        return provided_by(connection.app, kind)

    lookup.__name__ = lookup.__qualname__ = f"provided_{kind.__name__}"
    setattr(lookup, _KIND_ATTRIBUTE, kind)
    return _DEPENDENCIES.setdefault(kind, lookup)


def provided(kind: type[T]) -> Any:
    """Depend on this to receive the app's instance of ``kind``."""
    return Depends(_dependency(kind))


def provider_of(app: Starlette) -> Provider:
    """The app's services (``install`` put them there)."""
    provider: Provider | None = getattr(app.state, "services", None)
    if provider is None:
        raise NotProvided("this app was not given its services (safeboard.provision.install)")
    return provider


def provided_by(app: Starlette, kind: type[T]) -> T:
    """The app's instance of ``kind``, for code that is not a dependency of its own."""
    return provider_of(app).get(kind)


def install(app: Starlette, provider: Provider) -> None:
    """Give ``app`` its services; NotProvided, naming the route and the type, when a
    registered route asks for a type ``provider`` does not hold."""
    missing = sorted(
        {
            f"{_route_name(route)} asks for {kind.__module__}.{kind.__qualname__}"
            for route, kind in _needs(app.routes)
            if not provider.provides(kind)
        }
    )
    if missing:
        raise NotProvided(
            "not provided by the app's services: "
            + "; ".join(missing)
            + " (add a field of that type to safeboard.services.Services)"
        )
    app.state.services = provider


def _needs(routes: Sequence[BaseRoute]) -> Iterator[tuple[Any, type[Any]]]:
    # FastAPI >= 0.16x keeps included routers as nested entries; iter_route_contexts gives
    # each route with its effective path and dependencies (the router's included).
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    for route in iterate(routes) if iterate else routes:
        dependant: Dependant | None = getattr(route, "dependant", None)
        if dependant is not None:
            for kind in _kinds(dependant):
                yield route, kind
        mounted = getattr(getattr(route, "original_route", route), "routes", None)
        yield from _needs(list(mounted or []))  # a mounted application's own routes


def _kinds(dependant: Dependant) -> Iterator[type[Any]]:
    for sub in dependant.dependencies:
        kind = getattr(sub.call, _KIND_ATTRIBUTE, None)
        if kind is not None:
            yield kind
        yield from _kinds(sub)


def _route_name(route: Any) -> str:
    methods = sorted(getattr(route, "methods", None) or [])
    return " ".join([*methods, str(getattr(route, "path", route))])
