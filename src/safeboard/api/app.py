"""``create_app(settings)``: the one place the ASGI application is put together."""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from safeboard import __version__
from safeboard.accounts import routes as account_routes
from safeboard.agents import routes as agent_routes
from safeboard.api import health
from safeboard.api.context import RequestContextMiddleware
from safeboard.api.errors import install_error_handlers
from safeboard.api.guards import (
    BodyLimitMiddleware,
    ControlCharacterMiddleware,
    HostCheckMiddleware,
    JsonTextMiddleware,
    QueryCredentialMiddleware,
)
from safeboard.api.headers import SecurityHeadersMiddleware
from safeboard.api.monitoring import Monitoring, RequestMetricsMiddleware, metrics_router
from safeboard.artifacts import routes as artifact_routes
from safeboard.artifacts import series as artifact_series
from safeboard.artifacts.expiry import expiry_sweeps
from safeboard.audit import routes as audit_routes
from safeboard.auth.dependencies import requires
from safeboard.auth.permissions import Permission
from safeboard.jobs import agent_routes as task_agent_routes
from safeboard.jobs import code_routes as task_code_routes
from safeboard.jobs import log_routes as task_log_routes
from safeboard.jobs import routes as task_routes
from safeboard.metrics import history_routes as metric_history_routes
from safeboard.metrics import routes as metric_routes
from safeboard.metrics import step_routes
from safeboard.projects import routes as project_routes
from safeboard.provision import install
from safeboard.runs import live as live_routes
from safeboard.runs import routes as run_routes
from safeboard.schemas import ERROR_RESPONSES
from safeboard.services import build_services
from safeboard.settings import Settings, is_wildcard_host
from safeboard.storage import create_engine
from safeboard.tensorboards import routes as tensorboard_routes
from safeboard.trash import routes as trash_routes
from safeboard.trash.sweep import retention_sweeps
from safeboard.web import routes as web_routes
from safeboard.web import task_routes as web_task_routes
from safeboard.web import trash_routes as web_trash_routes

__all__ = ["allowed_host_names", "create_app"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_host_names(settings: Settings, certificate_names: Iterable[str] = ()) -> set[str]:
    """Every name a legitimate Host header may carry for this server (S1)."""
    names = {*LOOPBACK_NAMES, *settings.server.allowed_hosts, *settings.tls.san}
    names.update(certificate_names)
    if settings.server.public_url:  # the name the server tells people to use
        names.add(urlsplit(settings.server.public_url).hostname or "")
    host = settings.server.host
    if is_wildcard_host(host):
        names.update({socket.gethostname(), socket.getfqdn()})
    else:
        names.add(host)
    return {name.lower().strip("[]") for name in names if name}


# Each domain's routers, in the order requests try them (GET /metrics, made per app, between).
_ROUTERS: dict[str, tuple[APIRouter, ...]] = {}
_ROUTERS["before metrics"] = (
    health.router,
    account_routes.router,
    account_routes.users_router,
    audit_routes.router,
    project_routes.router,
    run_routes.router,
    live_routes.router,
    metric_routes.router,
    metric_history_routes.router,  # reads: ?metric=, never in the path
    step_routes.router,  # histograms and text per step
    artifact_routes.router,
    artifact_series.router,  # image series: a key's steps
    agent_routes.router,  # admins: /api/v1/agents/...
    agent_routes.agent_router,  # agents: /api/v1/agent/...
    task_routes.router,
    task_agent_routes.router,  # agents: lease, heartbeat, events
    task_code_routes.router,  # tasks' code: upload; the agent's download
    task_log_routes.router,  # users: a task's logs, followed
    tensorboard_routes.router,  # admins: TensorBoard on a directory
    web_routes.router,
)
_ROUTERS["after metrics"] = (
    trash_routes.router,  # delete, restore, purge; trash; retention
    web_trash_routes.router,  # a project's trash and settings page
    web_task_routes.router,  # a project's Tasks tab, a task's page
)


@functools.cache
def _shared_routes(group: str) -> tuple[BaseRoute, ...]:
    """The routes of a group of routers as an app includes them (every error response documented),
    built once per process and shared by every app it creates.

    FastAPI builds an included route's request handling (a pydantic validator per
    parameter and response) for each app that includes it: about 0.5 CPU s for these
    routers, at every server start and every in-process app of the tests. The routes hold
    nothing of an app (a request reaches its app's services through ``request.app``), so
    one build serves them all.
    """
    combined = APIRouter(responses=ERROR_RESPONSES)
    for router in _ROUTERS[group]:
        combined.include_router(router)
    return tuple(combined.routes)


def create_app(
    settings: Settings,
    *,
    engine: sa.Engine | None = None,
    certificate_names: Iterable[str] = (),
    trust_anchor: bytes | None = None,
) -> FastAPI:
    """Build the application. ``engine`` is created from the settings unless given; the
    caller owns migrations (``safeboard.storage.upgrade``) so that tests and replicas
    decide when they run. ``trust_anchor``: the certificate (DER) clients pin, for the
    pin of agents' join strings (``server/certificates.py: trust_anchor_der``)."""
    if engine is None:
        engine = create_engine(
            settings.database_url, busy_timeout_ms=settings.database.sqlite_busy_timeout_ms
        )
    # 1. Services, built once (safeboard/services.py); routes receive them by type
    #    (safeboard/provision.py), given to the app once the routes are known (step 4).
    services = build_services(settings, engine, trust_anchor=trust_anchor)
    monitoring = Monitoring(services)  # GET /metrics: this process's counts (a scrape key)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.events.start()  # PostgreSQL: LISTEN for other replicas' updates
        services.task_wakeup.start()  # PostgreSQL: LISTEN for tasks queued elsewhere
        services.reaper.start()  # lapsed leases: attempts lost, tasks requeued
        services.task_logs.start()  # PostgreSQL: LISTEN for task logs stored elsewhere
        # Abandoned uploads expire: soon after start, then hourly (artifacts/expiry.py).
        # The trash past its period is purged (trash/sweep.py), one replica at a time.
        every = settings.retention.sweep_minutes * 60
        async with expiry_sweeps(services.artifacts), retention_sweeps(services.trash, every=every):
            yield
        services.task_logs.stop()  # log followers answer now
        services.reaper.stop()
        services.task_wakeup.stop()  # waiting lease requests return now
        services.events.stop()
        services.streams.stop()
        services.metrics.rollups.stop()
        services.tensorboards.close()  # its children stop with the server
        engine.dispose()

    app = FastAPI(
        title="safeboard",
        version=__version__,
        debug=False,  # never a traceback to a client
        docs_url=None,  # Swagger UI needs inline script and a CDN; the CSP allows neither
        redoc_url=None,
        openapi_url=None,  # served below, to signed-in users only (S3)
        responses=ERROR_RESPONSES,
        lifespan=lifespan,
    )
    # 2. Error handlers: one JSON shape for every failure.
    install_error_handlers(app)
    # 3. Routes; each declares its permission or PUBLIC
    #    (tests/integration/test_routes_authorization.py) and the services it needs.
    app.router.routes.extend(_shared_routes("before metrics"))
    app.include_router(metrics_router(monitoring))  # a metrics-scope key: Prometheus
    app.router.routes.extend(_shared_routes("after metrics"))
    app.mount("/static", web_routes.static_files(), name="static")

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(_: object = requires(Permission.ACCOUNT_READ)) -> dict[str, object]:
        return app.openapi()

    # 4. The services to the app: refused here if a route asks for a type they lack.
    install(app, services)
    # 5. Middleware, innermost first (each add_middleware wraps the previous ones):
    #    text no database stores refused in JSON bodies -> body limit (outside it, so the
    #    JSON check reads at most the limit) -> credentials in URLs refused -> control
    #    characters in URLs refused -> Host check -> request id, access log,
    #    500s -> request metrics (every answer counted, refusals included) -> security
    #    headers -> proxy headers (outermost: every layer sees the real client address).
    streamed = re.compile(f"{artifact_routes.CONTENT_PATH}|{task_code_routes.CODE_PATH}")
    app.add_middleware(JsonTextMiddleware, routes=app.routes, skip=streamed)
    app.add_middleware(
        BodyLimitMiddleware, limit=settings.server.max_body_bytes, own_limit=streamed
    )
    app.add_middleware(QueryCredentialMiddleware)
    app.add_middleware(ControlCharacterMiddleware)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_host_names(settings, certificate_names))
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(RequestMetricsMiddleware, monitoring=monitoring)
    app.add_middleware(SecurityHeadersMiddleware, tls=settings.tls_on)
    if settings.server.behind_proxy:
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.server.behind_proxy],
        )
    return app
