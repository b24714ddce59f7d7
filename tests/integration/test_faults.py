"""Infrastructure faults answer 503 with Retry-After and a code that says which (issue 13):
a SQLite write lock held past the busy wait, a database that does not answer, a full
database; one log line per cause per interval, never a traceback per request."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event

from safeboard import wire
from safeboard.api.app import create_app
from safeboard.auth.permissions import Scope
from safeboard.auth.tokens import new_api_key
from safeboard.ids import new_id
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HEADERS = {"Content-Type": wire.MEDIA_TYPE}


@pytest.fixture
async def world(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    built = build_world(make_settings, url, database={"sqlite_busy_timeout_ms": 200})
    built.user("olga")
    yield built
    await built.close()


async def _run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post("/api/v1/projects/mnist/runs", json={"name": "base"})
    assert run.status_code == 201, run.text
    return olga, f"/api/v1/runs/{run.json()['id']}/metrics"


def _batch() -> bytes:
    return wire.pack(new_id(), {"loss": {"steps": [1], "times": [1.7e9], "values": [0.5]}})


def _assert_503(response: httpx.Response, code: str, retry_after: str) -> str:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert response.headers["retry-after"] == retry_after
    assert f"retry after {retry_after} s" in error["message"]
    return str(error["message"])


def _fault_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "safeboard.faults"]


async def test_a_write_lock_held_past_the_busy_wait_is_503_database_busy(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    olga, url = await _run(world)
    holder = sqlite3.connect(world.settings.database_url.removeprefix("sqlite:///"))
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                response = await olga.post(url, content=_batch(), headers=HEADERS)
                message = _assert_503(response, "database_busy", "1")
                assert "busy" in message
    finally:
        holder.rollback()
        holder.close()
    lines = _fault_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]  # once per cause per interval
    assert lines[0].getMessage().startswith("database busy")
    assert "database is locked" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    stored = await olga.post(url, content=_batch(), headers=HEADERS)
    assert stored.status_code == 200, stored.text


async def test_a_full_database_is_503_disk_full(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    olga, url = await _run(world)
    engine = world.services.engine
    engine.dispose()

    def cap(dbapi_connection: Any, _record: Any) -> None:
        # SQLite's own limit on the file's pages: its writes fail with SQLITE_FULL, as
        # they do when the disk is full.
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    sa_event.listen(engine, "connect", cap)
    try:
        with caplog.at_level(logging.WARNING):
            metrics = {
                f"k{i}": {"steps": [1], "times": [1.7e9], "values": [0.5]} for i in range(300)
            }
            response = await olga.post(url, content=wire.pack(new_id(), metrics), headers=HEADERS)
        _assert_503(response, "disk_full", "30")
        assert "disk is full" in response.json()["error"]["message"]
        assert _fault_lines(caplog)[0].getMessage().startswith("disk full")
    finally:
        sa_event.remove(engine, "connect", cap)
        engine.dispose()
    assert (await olga.post(url, content=_batch(), headers=HEADERS)).status_code == 200


@pytest.fixture
def unreachable(make_settings: Callable[..., Settings]) -> Iterator[httpx.AsyncClient]:
    """An app on a PostgreSQL address where nothing listens (port 9, discard)."""
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(make_settings(), engine=engine)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    yield httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")
    engine.dispose()


async def test_a_database_that_does_not_answer_is_503_database_unavailable(
    unreachable: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": f"Bearer {new_api_key().token}"}  # looked up: no database
    with caplog.at_level(logging.WARNING):
        for path in ("/api/v1/projects", "/api/v1/auth/session"):
            response = await unreachable.get(path, headers=headers)
            _assert_503(response, "database_unavailable", "5")
        page = await unreachable.get("/account", headers={**headers, "Accept": "text/html"})
        health = await unreachable.get("/healthz")
    assert page.status_code == 503  # a browser's navigation gets a page, not JSON
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "5"
    assert "the database is unavailable" in page.text
    assert health.status_code == 503
    assert health.json()["database"] == "unreachable"
    lines = _fault_lines(caplog)
    assert len(lines) == 1
    assert "database unavailable" in lines[0].getMessage()
    assert "refused" in lines[0].getMessage().lower()
    assert not [r for r in caplog.records if r.exc_info]


def test_every_operation_documents_its_503_and_retry_after(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Every route reaches the database, so every route may answer 503 (above: a list of
    projects, the session); the API's document says so on each, with its error body and
    Retry-After. Before, only /healthz did: a client made from the document met a status
    it did not know."""
    engine = create_engine(f"sqlite:///{tmp_path / 'doc.db'}")
    document = create_app(make_settings(), engine=engine).openapi()
    engine.dispose()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) > 50
    for name, operation in operations:
        answer = operation["responses"].get("503")
        assert answer is not None, f"{name}: no 503"
        if name != "GET /healthz":  # its 503 is its own report (api/health.py)
            assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
            assert "Retry-After" in answer["headers"], name
