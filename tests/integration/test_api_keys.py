"""API keys (S8): format, hashing, scopes, expiry, revocation at once, owner disabled,
credentials refused in URLs."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from safeboard import wire
from safeboard.accounts.api_keys import VERIFIED_FOR
from safeboard.auth import dependencies
from safeboard.auth.permissions import Role, Scope
from safeboard.ids import new_id
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


async def test_created_key_is_shown_once_and_stored_as_hash(world: World) -> None:
    client, csrf = await world.signed_in("alice")
    response = await client.post(
        "/api/v1/keys", json={"name": "laptop", "scope": "write"}, headers=world.unsafe(csrf)
    )
    assert response.status_code == 201
    body = response.json()
    token = body["token"]
    assert re.fullmatch(r"sb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)  # >= 256-bit secret
    assert body["scope"] == "write"
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    listed = (await client.get("/api/v1/keys")).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert token not in str(listed)
    secret = token.split("_", 2)[2]
    with world.services.engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM api_keys")]
    assert secret not in str(rows)


async def test_key_authenticates_and_records_last_use(world: World) -> None:
    token = world.key("alice", Scope.READ)
    client = world.client(address="198.51.100.4", Authorization=f"Bearer {token}")
    response = await client.get("/api/v1/auth/session")
    assert response.status_code == 200
    assert response.json()["credential"] == "api_key"
    assert response.json()["csrf_token"] is None
    keys = (await client.get("/api/v1/keys")).json()
    assert keys[0]["last_used_address"] == "198.51.100.4"
    assert keys[0]["last_used_at"] is not None


async def test_revocation_takes_effect_at_once(world: World) -> None:
    token = world.key("alice", Scope.ADMIN)
    client = world.client(Authorization=f"Bearer {token}")
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    key_id = token.split("_")[1]
    assert (await client.delete(f"/api/v1/keys/{key_id}")).status_code == 204
    assert (await client.get("/api/v1/auth/session")).status_code == 401


async def _first_refusal(client: Any, path: str, limit: float = 5.0) -> float:
    """Seconds until ``client`` is first refused (401) on ``path``, asking in a loop."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < limit:
        if (await client.get(path)).status_code == 401:
            return loop.time() - started
        await asyncio.sleep(0.01)
    return math.inf


@pytest.mark.alone  # timed against a bound: scripts/test runs it after the others
async def test_revocation_is_seen_by_another_replica(
    world: World, make_settings: Callable[..., Settings], db_url: str
) -> None:
    """Within VERIFIED_FOR (a second): each replica trusts a key it verified that long."""
    replica = build_world(make_settings, db_url)  # a second app on the same database
    try:
        token = world.key("alice", Scope.READ)
        on_replica = replica.client(Authorization=f"Bearer {token}")
        assert (await on_replica.get("/api/v1/auth/session")).status_code == 200
        world.context.keys.revoke(world.context.keys.principal(token, "x"), token.split("_")[1])
        assert await _first_refusal(on_replica, "/api/v1/auth/session") < VERIFIED_FOR + 0.5
    finally:
        await replica.close()


@pytest.mark.alone  # timed against a bound: scripts/test runs it after the others
async def test_revocation_stops_a_run_posting_on_another_replica_within_a_second(
    world: World, make_settings: Callable[..., Settings], db_url: str
) -> None:
    replica = build_world(make_settings, db_url)
    try:
        token = world.key("alice", Scope.WRITE)
        poster = replica.client(Authorization=f"Bearer {token}")
        assert (await poster.post("/api/v1/projects", json={"name": "p"})).status_code == 201
        run = await poster.post("/api/v1/projects/p/runs", json={})
        path = f"/api/v1/runs/{run.json()['id']}/metrics"
        loop = asyncio.get_running_loop()
        revoked_at: list[float] = []  # set once the revocation has committed

        async def post_in_a_loop() -> float:
            """Seconds from the revocation to the first 401."""
            for step in range(100_000):
                column = {"steps": [step], "times": [1.7e9], "values": [1.0]}
                response = await poster.post(
                    path,
                    content=wire.pack(new_id(), {"loss": column}),
                    headers={"Content-Type": wire.MEDIA_TYPE},
                )
                if response.status_code == 401:
                    assert revoked_at, "refused before the revocation"
                    return loop.time() - revoked_at[0]
                assert response.status_code == 200, response.text
                await asyncio.sleep(0.02)
            return math.inf

        task = asyncio.create_task(post_in_a_loop())
        await asyncio.sleep(0.3)  # posting: its key and its access remembered
        world.context.keys.revoke(world.context.keys.principal(token, "x"), token.split("_")[1])
        revoked_at.append(loop.time())
        assert await asyncio.wait_for(task, 10) < VERIFIED_FOR + 0.5
    finally:
        await replica.close()


async def test_a_key_used_again_within_a_second_is_not_looked_up(world: World) -> None:
    """P9: a sweep's runs post every half second; their keys cost no database round trip
    while remembered (and a different secret for the same key id is looked up again)."""
    token = world.key("alice", Scope.READ)
    client = world.client(Authorization=f"Bearer {token}")
    world.context.keys.monotonic = lambda: 0.0  # nothing remembered expires meanwhile
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = world.services.engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(5):
            assert (await client.get("/api/v1/auth/session")).status_code == 200
        assert not [s for s in statements if "api_keys" in s]
        forged = "_".join(token.split("_", 2)[:2]) + "_" + "A" * 43  # the secrets hold "_" too
        other = world.client(Authorization=f"Bearer {forged}")
        assert (await other.get("/api/v1/auth/session")).status_code == 401
        assert [s for s in statements if "api_keys" in s]  # looked up, and refused
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
    assert (await client.get("/api/v1/auth/session")).status_code == 200


async def test_a_remembered_key_is_answered_without_a_worker_thread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P9: the event loop answers a remembered key itself (a thread hop per request cost a
    sweep's server as much as the work); only a key to look up goes to a worker thread,
    and memory vouches only for the same whole secret, from the same address, within
    VERIFIED_FOR."""
    hops: list[object] = []
    real = dependencies.run_in_threadpool

    async def counted(func: Any, *args: Any) -> Any:
        hops.append(func)
        return await real(func, *args)

    monkeypatch.setattr(dependencies, "run_in_threadpool", counted)
    token = world.key("alice", Scope.READ)
    keys = world.context.keys
    now = [100.0]
    keys.monotonic = lambda: now[0]
    client = world.client(Authorization=f"Bearer {token}")
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    assert len(hops) == 1  # looked up once
    for _ in range(3):
        assert (await client.get("/api/v1/auth/session")).status_code == 200
    assert len(hops) == 1  # then answered on the loop
    assert keys.remembered(token, "127.0.0.1") is not None
    assert keys.remembered(token, "127.0.0.2") is None  # another address
    forged = "_".join(token.split("_", 2)[:2]) + "_" + "A" * 43
    assert keys.remembered(forged, "127.0.0.1") is None  # another secret, same key id
    now[0] += VERIFIED_FOR
    assert keys.remembered(token, "127.0.0.1") is None  # due: looked up or re-checked
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    assert len(hops) == 2


async def test_others_cannot_revoke_your_key(world: World) -> None:
    token = world.key("admin", Scope.ADMIN)
    alice = world.client(Authorization=f"Bearer {world.key('alice', Scope.ADMIN)}")
    response = await alice.delete(f"/api/v1/keys/{token.split('_')[1]}")
    assert response.status_code == 404
    still = world.client(Authorization=f"Bearer {token}")
    assert (await still.get("/api/v1/auth/session")).status_code == 200


async def test_expired_key_is_refused(world: World) -> None:
    token = world.key("alice", Scope.READ, days=1)
    later = datetime.now(UTC) + timedelta(days=1, seconds=1)
    world.set_clock(lambda: later)
    client = world.client(Authorization=f"Bearer {token}")
    assert (await client.get("/api/v1/auth/session")).status_code == 401


async def test_only_admins_make_keys_that_never_expire(world: World) -> None:
    alice = world.client(Authorization=f"Bearer {world.key('alice', Scope.ADMIN)}")
    refused = await alice.post("/api/v1/keys", json={"name": "x", "never_expires": True})
    assert refused.status_code == 403
    admin = world.client(Authorization=f"Bearer {world.key('admin', Scope.ADMIN)}")
    made = await admin.post("/api/v1/keys", json={"name": "x", "never_expires": True})
    assert made.status_code == 201
    assert made.json()["expires_at"] is None


async def test_disabled_owner_stops_every_key_at_once(world: World) -> None:
    token = world.key("alice", Scope.READ)
    client = world.client(Authorization=f"Bearer {token}")
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    world.users.set_active("alice", False, actor="test")
    assert (await client.get("/api/v1/auth/session")).status_code == 401
    world.users.set_active("alice", True, actor="test")
    assert (await client.get("/api/v1/auth/session")).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "Bearer",
        "Bearer sb_short",
        "Bearer sb_0123456789ab_" + "A" * 43,
        "Token abc",
    ],
)
async def test_malformed_credentials_are_401(world: World, authorization: str) -> None:
    client = world.client(Authorization=authorization)
    response = await client.get("/api/v1/auth/session")
    assert response.status_code == 401


async def test_right_key_id_with_wrong_secret_is_401(world: World) -> None:
    token = world.key("alice", Scope.READ)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    client = world.client(Authorization=f"Bearer {forged}")
    assert (await client.get("/api/v1/auth/session")).status_code == 401


async def test_bearer_does_not_fall_back_to_the_cookie(world: World) -> None:
    client, _ = await world.signed_in("alice")
    response = await client.get(
        "/api/v1/auth/session", headers={"Authorization": "Bearer sb_0123456789ab_" + "A" * 43}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("param", ["api_key", "token", "access_token", "Key", "session"])
async def test_credentials_in_the_query_string_are_refused_and_not_logged(
    world: World, caplog: pytest.LogCaptureFixture, param: str
) -> None:
    token = world.key("alice", Scope.READ)
    with caplog.at_level(logging.INFO):
        response = await world.client().get(f"/api/v1/auth/session?{param}={token}")
        shaped = await world.client().get(f"/api/v1/keys?q={token}")
    assert response.status_code == 400
    assert shaped.status_code == 400
    assert "Authorization header" in response.json()["error"]["message"]
    secret = token.split("_", 2)[2]
    server_lines = [r.getMessage() for r in caplog.records if r.name.startswith("safeboard")]
    assert server_lines
    assert secret not in "\n".join(server_lines)


async def test_remembered_keys_are_rechecked_together_and_a_revoked_one_is_dropped(
    world: World, make_settings: Callable[..., Settings], db_url: str
) -> None:
    """Past the second, the first request re-checks every key remembered for over half of
    it in one go (a few indexed queries for a whole sweep); a key revoked meanwhile (here on
    another replica, which this one cannot hear of) is refused there and then."""
    now = [0.0]
    world.context.keys.monotonic = lambda: now[0]
    tokens = [world.key("alice", Scope.READ) for _ in range(3)]
    clients = [world.client(Authorization=f"Bearer {t}") for t in tokens]
    for client in clients:
        assert (await client.get("/api/v1/auth/session")).status_code == 200
    replica = build_world(make_settings, db_url)
    try:
        last = tokens[2]
        replica.context.keys.revoke(replica.context.keys.principal(last, "x"), last.split("_")[1])
    finally:
        await replica.close()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = world.services.engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        now[0] = VERIFIED_FOR + 0.1
        assert (await clients[0].get("/api/v1/auth/session")).status_code == 200
        assert len([s for s in statements if "FROM api_keys" in s]) == 1  # all three at once
        assert (await clients[1].get("/api/v1/auth/session")).status_code == 200
        assert len([s for s in statements if "FROM api_keys" in s]) == 1  # re-checked above
        assert (await clients[2].get("/api/v1/auth/session")).status_code == 401
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)


async def test_a_request_finding_a_recheck_under_way_waits_for_it_not_a_look_up(
    world: World,
) -> None:
    """Under a sweep every key falls due at once: a request whose key is due while another
    request re-checks the keys waits for that re-check rather than looking its key up alone."""
    now = [0.0]
    keys = world.context.keys
    keys.monotonic = lambda: now[0]
    tokens = [world.key("alice", Scope.READ) for _ in range(2)]
    clients = [world.client(Authorization=f"Bearer {t}") for t in tokens]
    for client in clients:
        assert (await client.get("/api/v1/auth/session")).status_code == 200
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = world.services.engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        now[0] = VERIFIED_FOR + 0.1
        keys._rechecking.acquire()  # another request's re-check under way
        try:
            waiting = asyncio.ensure_future(clients[0].get("/api/v1/auth/session"))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # before: looked up alone meanwhile
        finally:
            keys._rechecking.release()
        assert (await waiting).status_code == 200
        assert (await clients[1].get("/api/v1/auth/session")).status_code == 200
        assert len([s for s in statements if "FROM api_keys" in s]) == 1  # both at once
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
