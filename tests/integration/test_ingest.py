"""The ingest path (issue 12, section 4): what one batch costs the database, which batches
are valid (one rule for the JSON and the packed body), and what the SDK logs comes back
bit-exact, through its spool, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from safeboard import wire
from safeboard.auth.permissions import Role, Scope
from safeboard.ids import new_id
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    built.user("eve", Role.MEMBER)
    yield built
    await built.close()


async def _run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post("/api/v1/projects/mnist/runs", json={"name": "base"})
    assert run.status_code == 201, run.text
    return olga, run.json()["id"]


@contextmanager
def checkouts(world: World) -> Iterator[list[object]]:
    """Every connection the app's engine hands out meanwhile (a pool checkout)."""
    engine = world.app.state.engine
    seen: list[object] = []

    def on_checkout(dbapi_connection: object, *_: Any) -> None:
        seen.append(dbapi_connection)

    event.listen(engine, "checkout", on_checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", on_checkout)


def _packed(batch_id: str, n: int = 3) -> bytes:
    steps = list(range(n))
    column = {"steps": steps, "times": [1.7e9 + s for s in steps], "values": [0.5] * n}
    return wire.pack(batch_id, {"loss": column})


async def test_a_batch_costs_two_connections_key_lookup_and_write(world: World) -> None:
    """The access check runs inside the write transaction: one connection for the API key,
    one for the check and the write, whether the batch is new, a retry, or refused."""
    olga, run_id = await _run(world)
    url = f"/api/v1/runs/{run_id}/metrics"
    headers = {"Content-Type": wire.MEDIA_TYPE}
    batch_id = new_id()
    for expected in (200, 200):  # stored, then acknowledged as a duplicate
        with checkouts(world) as seen:
            response = await olga.post(url, content=_packed(batch_id), headers=headers)
        assert response.status_code == expected, response.text
        assert len(seen) == 2
    eve = world.client(Authorization=f"Bearer {world.key('eve', Scope.WRITE)}")
    assert (await eve.get("/api/v1/projects")).status_code == 200  # the key's first use noted
    with checkouts(world) as seen:
        response = await eve.post(url, content=_packed(new_id()), headers=headers)
    assert response.status_code == 404
    assert len(seen) == 2


async def test_a_batch_whose_live_update_is_too_long_for_notify_is_stored(world: World) -> None:
    """The live update goes in the write's transaction on PostgreSQL: one longer than NOTIFY
    takes (8,000 bytes) is left out, and the batch is stored all the same."""
    olga, run_id = await _run(world)
    one = {"steps": [1], "times": [1.7e9], "values": [0.5]}
    metrics = {f"{i:03d}" + "k" * 200: one for i in range(60)}
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=wire.pack(new_id(), metrics),
        headers={"Content-Type": wire.MEDIA_TYPE},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 60
