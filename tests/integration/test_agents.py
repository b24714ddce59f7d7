"""Agent enrollment through the real app, on SQLite and PostgreSQL (S9, S14, S16): join
tokens are single use, expire, live only as hashes; concurrent enrollments with one token
make one agent; a revoked agent is refused at once; failed enrollments are throttled."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from safeboard.agents.credentials import parse_join_secret
from safeboard.audit import repository as audit
from safeboard.auth.permissions import Role, Scope
from safeboard.clock import utcnow
from safeboard.errors import JoinTokenInvalid
from safeboard.settings import Settings
from safeboard.tables import Base
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

GPU = {"index": 0, "uuid": "GPU-0a1b2c3d", "model": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


def admin(world: World) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key('admin', Scope.ADMIN)}")


async def join_string(world: World, **body: Any) -> str:
    response = await admin(world).post(
        "/api/v1/agents/join-tokens", json={"pool": "gpu", "labels": ["a100"], **body}
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["join_string"].startswith(f"sbjoin1.{made['id']}.")
    assert made["join_string"].endswith(f"@{world.base_url}")
    return str(made["join_string"])


def token_of(join: str) -> str:
    """What an agent sends: ``<id>.<secret>``."""
    parsed = parse_join_secret(join)
    assert parsed is not None
    return f"{parsed.id}.{parsed.secret}"


async def enroll(world: World, token: str, address: str = "127.0.0.1") -> httpx.Response:
    body = {"token": token, "hostname": "gpu-node-1", "version": "0.1", "labels": ["x"]}
    return await world.client(address).post("/api/v1/agent/enroll", json=body)


def everything_stored(world: World) -> str:
    """Every row of every table as text (and on SQLite the database files' bytes)."""
    texts = []
    with world.services.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            texts += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    database = world.services.engine.url.database
    if world.services.engine.dialect.name == "sqlite" and database:
        for path in Path(database).parent.glob(Path(database).name + "*"):
            texts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(texts)


async def test_enroll_gives_an_agent_credential_once_and_the_token_is_spent(world: World) -> None:
    join = await join_string(world)
    response = await enroll(world, token_of(join))
    assert response.status_code == 201, response.text
    enrolled = response.json()
    assert enrolled["credential"].startswith(f"sb_agent_{enrolled['agent_id']}_")
    assert enrolled["pool"] == "gpu"
    again = await enroll(world, token_of(join))
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "join_token_invalid"
    # The whole join string is accepted as the token too (it is spent all the same).
    assert (await enroll(world, join)).status_code == 401
    with world.services.engine.connect() as conn:
        actions = [(e.action, e.outcome) for e in audit.entries(conn, limit=50)]
    assert ("agent.join_token_created", "ok") in actions
    assert ("agent.enrolled", "ok") in actions
    assert ("agent.enrolled", "failed") in actions


async def test_unknown_wrong_expired_and_used_tokens_get_one_answer(world: World) -> None:
    used = token_of(await join_string(world))
    assert (await enroll(world, used)).status_code == 201
    good = token_of(await join_string(world))
    token_id, secret = good.split(".")
    expiring = token_of(await join_string(world, ttl_seconds=60))
    world.services.agents.clock = lambda: utcnow() + timedelta(seconds=61)
    answers = []
    for token in (
        used,  # used
        f"{token_id}.{'A' * len(secret)}",  # wrong secret
        f"{'0' * 12}.{secret}",  # unknown id
        expiring,  # expired
        "not a token",  # malformed
    ):
        response = await enroll(world, token)
        error = response.json()["error"]
        answers.append((response.status_code, error["code"], error["message"]))
    assert len(set(answers)) == 1, answers
    assert answers[0][:2] == (401, "join_token_invalid")


async def test_secrets_live_only_as_hashes(world: World) -> None:
    join = await join_string(world)
    enrolled = (await enroll(world, token_of(join))).json()
    secret = token_of(join).split(".")[1]
    credential_secret = enrolled["credential"].removeprefix(f"sb_agent_{enrolled['agent_id']}_")
    assert len(credential_secret) == 43
    stored = everything_stored(world)
    assert enrolled["agent_id"] in stored  # the search does see the tables
    assert secret not in stored
    assert credential_secret not in stored


async def test_concurrent_enrollments_with_one_token_make_one_agent(world: World) -> None:
    token = token_of(await join_string(world))
    service = world.services.agents
    start = threading.Barrier(6)
    won: list[str] = []
    refused: list[str] = []

    def attempt(n: int) -> None:
        start.wait()
        try:
            agent, _ = service.enroll(
                token, hostname=f"h{n}", version="1", labels=[], address=f"192.0.2.{n}"
            )
            won.append(agent.id)
        except JoinTokenInvalid:
            refused.append(str(n))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(won) == 1, (won, refused)
    assert len(refused) == 5, (won, refused)
    assert [agent.id for agent in service.list_agents()] == won


async def test_hello_stores_the_inventory_and_revocation_holds_at_once(world: World) -> None:
    credential = (await enroll(world, token_of(await join_string(world)))).json()["credential"]
    agent = world.client("192.0.2.7", Authorization=f"Bearer {credential}")
    hello = {"hostname": "gpu-node-1", "version": "0.2", "gpus": [GPU], "cpus": 16,
             "memory_mib": 131072, "labels": ["h100"]}  # fmt: skip
    response = await agent.post("/api/v1/agent/hello", json=hello)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["pool"] == "gpu"
    assert answer["labels"] == ["a100", "h100"]
    assert "server_time" in answer
    manager = admin(world)
    listed = (await manager.get("/api/v1/agents")).json()
    assert len(listed) == 1
    row = listed[0]
    assert row["gpus"] == [GPU]
    assert (row["hostname"], row["version"], row["cpus"]) == ("gpu-node-1", "0.2", 16)
    assert row["last_address"] == "192.0.2.7"
    assert row["last_seen_at"] is not None
    assert row["revoked_at"] is None
    assert "credential" not in str(row)
    assert "secret" not in str(row)
    revoked = await manager.post(f"/api/v1/agents/{row['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_by"].startswith("user:admin")
    refused = await agent.post("/api/v1/agent/hello", json=hello)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "agent_revoked"
    assert (await manager.post("/api/v1/agents/nosuchagent/revoke")).status_code == 404
    with world.services.engine.connect() as conn:
        actions = [e.action for e in audit.entries(conn, limit=50)]
    assert actions.count("agent.revoked") == 1


async def test_a_wrong_agent_credential_is_refused(world: World) -> None:
    credential = world.agent()
    wrong = credential[:-4] + ("AAAA" if not credential.endswith("AAAA") else "BBBB")
    for token in (wrong, "sb_agent_0123456789ab_" + "A" * 43, "sb_agent_short"):
        client = world.client(Authorization=f"Bearer {token}")
        response = await client.post("/api/v1/agent/hello", json={"hostname": "h"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "agent_invalid"


async def test_failed_enrollments_are_throttled_like_sign_ins(world: World) -> None:
    good = token_of(await join_string(world))
    for _ in range(world.settings.auth.login_max_failures):
        assert (await enroll(world, "0" * 12 + ".x" * 20, "192.0.2.99")).status_code == 401
    locked = await enroll(world, good, "192.0.2.99")
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert (await enroll(world, good, "192.0.2.100")).status_code == 201  # elsewhere: fine


@pytest.mark.parametrize(
    "body",
    [
        {"pool": "gpu", "ttl_seconds": 8 * 86400},
        {"pool": "gpu", "ttl_seconds": 10},
        {"pool": "bad pool"},
        {"pool": "gpu", "labels": ["a b"]},
        {"pool": "gpu", "extra": 1},
    ],
)
async def test_bad_join_token_requests_are_refused(world: World, body: dict[str, Any]) -> None:
    response = await admin(world).post("/api/v1/agents/join-tokens", json=body)
    assert response.status_code == 422, response.text


async def test_last_use_is_written_once_a_minute_or_on_a_new_address(world: World) -> None:
    credential = world.agent()
    service = world.services.agents
    start = utcnow()
    service.clock = lambda: start

    def seen() -> tuple[object, object]:
        (agent,) = service.list_agents()
        return agent.last_seen_at, agent.last_address

    hello = {"hostname": "h"}
    here = world.client("192.0.2.1", Authorization=f"Bearer {credential}")
    assert (await here.post("/api/v1/agent/hello", json=hello)).status_code == 200
    assert seen() == (start, "192.0.2.1")
    service.clock = lambda: start + timedelta(seconds=30)
    assert (await here.post("/api/v1/agent/hello", json=hello)).status_code == 200
    assert seen() == (start, "192.0.2.1")  # within the minute: not written
    there = world.client("192.0.2.2", Authorization=f"Bearer {credential}")
    assert (await there.post("/api/v1/agent/hello", json=hello)).status_code == 200
    assert seen() == (start + timedelta(seconds=30), "192.0.2.2")  # a new address: written
    service.clock = lambda: start + timedelta(seconds=91)
    assert (await there.post("/api/v1/agent/hello", json=hello)).status_code == 200
    assert seen() == (start + timedelta(seconds=91), "192.0.2.2")
