"""``GET /metrics``: the server's metrics in Prometheus' text format, for a scrape key.

Counted as they happen, per server process (each replica answers for itself): requests by
route template, method and status, and their latency. Read at each scrape: metric
batches and points stored since the start, tasks by state (the queue's depth is
``state="queued"``), open event streams, the database's connection pool, and the
artifact store's bytes and files by state. Routes are labelled by their template
(``/api/v1/runs/{run_id}``), never by the path asked for: a scan of made-up paths cannot
grow the label set. The endpoint needs a key of the dedicated ``metrics`` scope (an
admin makes one: ``safeboard key create --scope metrics``), which can do nothing else,
and no other credential reaches it (docs/operations.md, "Monitoring").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safeboard.auth.dependencies import requires
from safeboard.auth.permissions import Permission
from safeboard.services import Services

__all__ = ["Monitoring", "RequestMetricsMiddleware", "metrics_router"]

UNMATCHED = "(unmatched)"  # a path no route serves: one label for them all


class Monitoring:
    """One server process's metrics: its own registry (never the library's global one,
    so that apps built side by side, as in the tests, count apart)."""

    def __init__(self, services: Services) -> None:
        # auto_describe off: describing a collector without describe() would collect it,
        # and so query the database, when the app is built.
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "safeboard_http_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "safeboard_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (event streams: "
            "until they close)",
            ("method", "route"),
            registry=self.registry,
        )
        self.registry.register(_ServerState(services))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ServerState(Collector):
    """What is read at each scrape rather than counted as it happens."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: what it yields is read from the database at each scrape."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        services = self.services
        counts = services.metrics.ingested
        yield _counter("safeboard_ingest_batches", "Metric batches stored", counts.batches)
        yield _counter("safeboard_ingest_points", "Metric points stored", counts.points)
        yield _counter(
            "safeboard_ingest_duplicate_batches",
            "Batches acknowledged again without storing (a client's retry)",
            counts.duplicates,
        )
        streams = GaugeMetricFamily("safeboard_event_streams_open", "Live event streams open")
        streams.add_metric([], services.streams.open_count())
        yield streams
        yield from _pool(services.engine)
        yield from _database(services.engine)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _pool(engine: sa.Engine) -> Iterator[Metric]:
    pool: Any = engine.pool
    if not hasattr(pool, "checkedout") or not hasattr(pool, "size"):
        return  # a pool that keeps no count (SQLite in memory: one connection per thread)
    used = GaugeMetricFamily("safeboard_db_connections_in_use", "Database connections lent out")
    used.add_metric([], pool.checkedout())
    size = GaugeMetricFamily("safeboard_db_pool_size", "Database connections the pool keeps")
    size.add_metric([], pool.size())
    yield used
    yield size


def _database(engine: sa.Engine) -> Iterator[Metric]:
    tasks = GaugeMetricFamily("safeboard_tasks", "Tasks by state", labels=["state"])
    files = GaugeMetricFamily("safeboard_artifacts", "Artifact files by state", labels=["state"])
    stored = GaugeMetricFamily(
        "safeboard_artifact_bytes", "Artifact bytes received, by state", labels=["state"]
    )
    with engine.connect() as conn:
        for state, count in conn.execute(
            sa.text("SELECT state, count(*) FROM tasks GROUP BY state ORDER BY state")
        ):
            tasks.add_metric([state], count)
        for state, count, received in conn.execute(
            sa.text(
                "SELECT state, count(*), coalesce(sum(received), 0) FROM artifacts "
                "GROUP BY state ORDER BY state"
            )
        ):
            files.add_metric([state], count)
            stored.add_metric([state], received)
    yield from (tasks, files, stored)


class RequestMetricsMiddleware:
    """Counts every response by route template, method and status, and its latency."""

    def __init__(self, app: ASGIApp, monitoring: Monitoring) -> None:
        self.app = app
        self.monitoring = monitoring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what a client sees when the app ends without a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # the router puts the matched route here
            template = getattr(route, "path", None) or UNMATCHED
            self.monitoring.observe(
                scope["method"], template, status, time.perf_counter() - started
            )


def metrics_router(monitoring: Monitoring) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        summary="The server's metrics in Prometheus' text format (a metrics-scope key)",
    )
    async def metrics(_: object = requires(Permission.METRICS_READ)) -> Response:
        body = await run_in_threadpool(monitoring.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
