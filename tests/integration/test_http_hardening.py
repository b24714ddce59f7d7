"""HTTP hardening of the in-process app: headers (S11), Host check (S1), body limits and
the error shape (S17), redacted access log (S15)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request

from safeboard.api.app import create_app
from safeboard.errors import ConfigError
from safeboard.services import services_of
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.support.schema import migrate

pytestmark = pytest.mark.anyio

SECRET = "Sup3rS3cretT0kenValue"
HEALTHY = {"status": "ok", "database": "ok", "disk": "ok", "artifact_disk": "ok"}


def _client(app: FastAPI, client_ip: str = "127.0.0.1", base: str = "http://127.0.0.1:8080"):
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base)


def _assert_security_headers(response: httpx.Response, *, hsts: bool) -> None:
    csp = response.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers
    if hsts:
        max_age = int(response.headers["strict-transport-security"].split("=")[1].split(";")[0])
        assert max_age >= 31536000
    else:
        assert "strict-transport-security" not in response.headers


def _assert_error_shape(response: httpx.Response, code: str) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


@pytest.fixture
def app_with_probes(make_app: Callable[..., FastAPI]) -> Callable[..., FastAPI]:
    """The real app plus two probe routes: one that fails unexpectedly, one that reads a body."""

    def make(**overrides: Any) -> FastAPI:
        app = make_app(**overrides)

        async def boom() -> None:
            raise RuntimeError(f"database password is {SECRET}")

        async def echo(request: Request) -> dict[str, int]:
            return {"received": len(await request.body())}

        async def misconfigured() -> None:
            raise ConfigError(f"cannot open /srv/private/{SECRET}.db")

        app.add_api_route("/probe/boom", boom, methods=["GET"])
        app.add_api_route("/probe/echo", echo, methods=["POST"])
        app.add_api_route("/probe/misconfigured", misconfigured, methods=["GET"])
        return app

    return make


@pytest.fixture
async def probe(app_with_probes: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    app = app_with_probes(server={"max_body_bytes": 2048})
    async with _client(app) as client:
        yield client
    services_of(app).engine.dispose()


async def test_healthz_reports_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == HEALTHY
    _assert_security_headers(response, hsts=False)


async def test_healthz_on_each_backend(
    engine: sa.Engine, make_settings: Callable[..., Settings]
) -> None:
    migrate(engine)
    app = create_app(make_settings(), engine=engine)
    async with _client(app) as client:
        response = await client.get("/healthz")
    assert response.json() == HEALTHY


async def test_healthz_reports_unreachable_database(
    make_settings: Callable[..., Settings],
) -> None:
    unreachable = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(make_settings(), engine=unreachable)
    async with _client(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {**HEALTHY, "status": "degraded", "database": "unreachable"}


@pytest.mark.parametrize(("path", "status", "code"), [("/nowhere", 404, "not_found")])
async def test_unknown_route_gets_error_shape_and_headers(
    client: httpx.AsyncClient, path: str, status: int, code: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status
    _assert_error_shape(response, code)
    _assert_security_headers(response, hsts=False)


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("path", ["/nowhere", "/projects", "/runs/x/y", "/nowhere?q=<b>x</b>"])
async def test_a_browser_lost_at_an_unknown_address_gets_a_page(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"Accept": BROWSER})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text
    assert "There is no page at this address." in response.text
    assert response.headers["x-request-id"] in response.text
    assert "<script" not in response.text  # the CSP allows no inline script; none is needed
    assert "<b>" not in response.text
    _assert_security_headers(response, hsts=False)


@pytest.mark.parametrize(
    ("method", "path", "accept"),
    [
        ("GET", "/api/v1/nowhere", BROWSER),  # the API answers JSON, whoever asks
        ("GET", "/nowhere", "application/json"),
        ("GET", "/nowhere", "*/*"),
        ("POST", "/nowhere", BROWSER),
        ("GET", "/static/nowhere.css", BROWSER),
    ],
)
async def test_api_and_non_browser_requests_keep_the_json_error(
    client: httpx.AsyncClient, method: str, path: str, accept: str
) -> None:
    response = await client.request(method, path, headers={"Accept": accept})
    assert response.status_code in (404, 405)
    code = "not_found" if response.status_code == 404 else "method_not_allowed"
    _assert_error_shape(response, code)


async def test_wrong_method_gets_405_shape(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    _assert_error_shape(response, "method_not_allowed")


async def test_unexpected_error_is_generic_500_with_details_only_in_log(
    probe: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="safeboard.errors"):
        response = await probe.get("/probe/boom")
    assert response.status_code == 500
    error = _assert_error_shape(response, "internal")
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    _assert_security_headers(response, hsts=False)
    logged = [r for r in caplog.records if r.name == "safeboard.errors"]
    assert logged
    assert error["request_id"] in logged[0].getMessage()
    assert logged[0].exc_info is not None  # the operator gets the traceback


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
        "localhost.",
        "[::2]:8080",
        "[::1]evil.example",
        "localhost:80:80",
        "localhost:x",
        "local host",
        "localhost@evil.example",
        "",
    ],
)
async def test_unknown_host_header_is_refused(probe: httpx.AsyncClient, host: str) -> None:
    response = await probe.get("/healthz", headers={"Host": host})
    if host == "localhost.":  # a trailing dot names the same host
        assert response.status_code == 200
        return
    assert response.status_code == 400
    error = _assert_error_shape(response, "bad_request")
    assert "Host" in error["message"]
    _assert_security_headers(response, hsts=False)


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080"])
async def test_loopback_host_names_are_accepted(probe: httpx.AsyncClient, host: str) -> None:
    response = await probe.get("/healthz", headers={"Host": host})
    assert response.status_code == 200


async def test_configured_host_names_are_accepted(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(server={"allowed_hosts": ["board.example.org"]}, tls={"san": ["ml.example"]})
    async with _client(app) as client:
        for host in ("board.example.org", "ml.example:8443", "BOARD.example.org"):
            assert (await client.get("/healthz", headers={"Host": host})).status_code == 200
        assert (await client.get("/healthz", headers={"Host": "other.example"})).status_code == 400


async def test_body_over_limit_by_content_length_is_413(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/echo", content=b"x" * 4096)
    assert response.status_code == 413
    _assert_error_shape(response, "payload_too_large")
    _assert_security_headers(response, hsts=False)


async def test_body_under_limit_passes(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/echo", content=b"x" * 1000)
    assert response.status_code == 200
    assert response.json() == {"received": 1000}


async def test_streamed_body_over_limit_is_413_without_reading_it_all(
    probe: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1024
            yield b"y" * 1024

    response = await probe.post("/probe/echo", content=chunks())
    assert response.status_code == 413
    _assert_error_shape(response, "payload_too_large")
    assert sent < 1000 * 1024  # the server stopped reading long before the end


async def test_invalid_content_length_is_400(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/echo", content=b"abc", headers={"Content-Length": "-5"})
    assert response.status_code == 400
    _assert_error_shape(response, "bad_request")


async def test_hsts_under_tls(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(tls={"enabled": True})
    async with _client(app, base="https://127.0.0.1:8443") as client:
        for path in ("/healthz", "/nowhere"):
            _assert_security_headers(await client.get(path), hsts=True)


async def test_forwarded_headers_only_from_named_proxies(
    make_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(server={"behind_proxy": "10.1.2.3"})
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with caplog.at_level(logging.INFO, logger="safeboard.access"):
        async with _client(app, client_ip="10.1.2.3") as trusted:
            via_proxy = await trusted.get("/healthz", headers=forwarded)
        async with _client(app, client_ip="198.51.100.7") as direct:
            spoofed = await direct.get("/healthz", headers=forwarded)
    lines = [r.getMessage() for r in caplog.records if r.name == "safeboard.access"]
    assert lines[0].startswith("203.0.113.9 ")  # the proxy's word about the client is taken
    assert "strict-transport-security" in via_proxy.headers  # and about the scheme
    assert lines[1].startswith("198.51.100.7 ")  # anyone else's is not
    assert "strict-transport-security" not in spoofed.headers


async def test_access_log_holds_no_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await client.get(f"/healthz?token={SECRET}&page=1")
        await client.get(f"/nowhere?api_key={SECRET}&password={SECRET}")
        await client.get("/healthz", headers={"Authorization": f"Bearer {SECRET}"})
        await client.get("/healthz", headers={"Cookie": f"__Host-safeboard={SECRET}"})
        await client.get(f"/api/v1/keys/sb_abc_{SECRET}")
    # The server's records (the test's own HTTP client logs its URLs under "httpx").
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("safeboard"))
    assert "GET /healthz?token=[REDACTED]&page=1" in text  # the request was logged...
    assert SECRET not in text  # ...without any of the secrets


async def test_server_side_error_messages_stay_in_the_log(
    probe: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="safeboard.errors"):
        response = await probe.get("/probe/misconfigured")
    assert response.status_code == 500
    _assert_error_shape(response, "config")
    assert SECRET not in response.text
    assert any(SECRET in r.getMessage() for r in caplog.records)


async def test_wildcard_certificate_names_match_one_label(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(tls={"san": ["*.ml.example"]})
    async with _client(app) as client:
        ok = await client.get("/healthz", headers={"Host": "board.ml.example"})
        deeper = await client.get("/healthz", headers={"Host": "a.b.ml.example"})
        bare = await client.get("/healthz", headers={"Host": "ml.example"})
    assert (ok.status_code, deeper.status_code, bare.status_code) == (200, 400, 400)


async def test_head_healthz_for_probes(client: httpx.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 200


async def test_access_log_cannot_be_forged_with_encoded_newlines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="safeboard.access"):
        await client.get("/x%0a2026-01-01 INFO safeboard.access: admin signed in%0d")
    lines = [r.getMessage() for r in caplog.records if r.name == "safeboard.access"]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "\r" not in lines[0]
