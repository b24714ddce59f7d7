"""The agent routes (``/api/v1/agent/lease``, ``.../heartbeat``, ``.../events``) through the
real app, on SQLite and PostgreSQL: the agent is the one its credential names, never a
body's; a stale attempt is 409, another agent's 404; a revoked agent is refused at once;
no user credential reaches them; the long-poll is woken by a submit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from safeboard.agents.credentials import parse_agent_credential
from safeboard.auth.permissions import Role, Scope
from safeboard.cli.local import Local
from safeboard.clock import utcnow
from safeboard.jobs.spec import TaskSpec
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

GPUS = ["GPU-aaaa", "GPU-bbbb"]


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    owner = Local(built.services).principal("admin")
    built.services.projects.create(owner, "p")
    yield built
    await built.close()


def submit(world: World, *command: str, **spec: Any) -> int:
    owner = Local(world.services).principal("admin")
    detail = world.services.tasks.submit(owner, "p", TaskSpec(list(command), **spec))
    return detail.task.id


def agent(world: World) -> tuple[httpx.AsyncClient, str]:
    credential = world.agent()
    parsed = parse_agent_credential(credential)
    assert parsed is not None
    return world.client(Authorization=f"Bearer {credential}"), parsed.id


async def lease(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/agent/lease", json={"free_gpus": GPUS, **body})


async def test_lease_heartbeat_and_events(world: World) -> None:
    client, agent_id = agent(world)
    assert (await lease(client)).status_code == 204  # nothing queued, no wait
    task_id = submit(world, "python", "train.py", env={"LR": "0.1"}, gpus=1, max_seconds=600)
    answer = await lease(client, labels=["a100"])
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["id"], got["attempt"], got["command"], got["env"]) == (
        task_id, 1, ["python", "train.py"], {"LR": "0.1"}
    )  # fmt: skip
    assert got["gpus"] == ["GPU-aaaa"]
    assert got["max_seconds"] == 600
    assert got["lease_seconds"] == world.settings.jobs.lease_seconds
    assert got["task_token"].startswith("sb_task_")  # this attempt's own (S14)
    assert got["deadline"] is not None
    shown = world.services.tasks.get(Local(world.services).principal("admin"), task_id)
    assert shown.attempts[0].agent_id == agent_id
    assert got["run_id"] == shown.task.run_id

    base = f"/api/v1/agent/tasks/{task_id}/1"
    beat = await client.post(f"{base}/heartbeat")
    assert beat.status_code == 200, beat.text
    assert beat.json()["cancel"] is False
    for body, state in (({"kind": "starting"}, "starting"),
                        ({"kind": "running", "pid": 4242}, "running"),
                        ({"kind": "running", "pid": 4242}, "running"),  # a repeat
                        ({"kind": "exited", "exit_code": 0}, "succeeded")):  # fmt: skip
        reported = await client.post(f"{base}/events", json=body)
        assert reported.status_code == 200, reported.text
        assert reported.json() == {"state": state}
    ended = await client.post(f"{base}/heartbeat")
    assert ended.status_code == 409
    bad = await client.post(f"{base}/events", json={"kind": "exited"})
    assert bad.status_code == 422


async def test_the_agent_is_the_credentials_never_the_bodys(world: World) -> None:
    client, agent_id = agent(world)
    _, other_id = agent(world)
    submit(world, "true")
    refused = await lease(client, agent_id=other_id)
    assert refused.status_code == 422  # no field names an agent: refused, never used
    taken = await lease(client)
    assert taken.status_code == 200
    shown = world.services.tasks.get(Local(world.services).principal("admin"), taken.json()["id"])
    assert [a.agent_id for a in shown.attempts] == [agent_id]


async def test_fencing_another_agent_and_a_stale_attempt(world: World) -> None:
    first, _ = agent(world)
    second, _ = agent(world)
    task_id = submit(world, "sleep", "60")
    assert (await lease(first)).status_code == 200
    base = f"/api/v1/agent/tasks/{task_id}/1"
    # Another agent's attempt: 404, as if it did not exist.
    assert (await second.post(f"{base}/heartbeat")).status_code == 404
    assert (await second.post(f"{base}/events", json={"kind": "starting"})).status_code == 404
    # The lease lapses, the reaper requeues, the second agent takes attempt 2.
    queue = world.services.queue
    queue.clock = lambda: utcnow() + timedelta(seconds=world.settings.jobs.lease_seconds + 5)
    assert queue.reap() == 1
    queue.clock = utcnow
    again = await lease(second)
    assert (again.json()["id"], again.json()["attempt"]) == (task_id, 2)
    # Attempt 1's late heartbeat and report: 409, whatever they say.
    late = await first.post(f"{base}/heartbeat")
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "conflict"
    exited = await first.post(f"{base}/events", json={"kind": "exited", "exit_code": 0})
    assert exited.status_code == 409
    assert (await first.post(f"/api/v1/agent/tasks/{task_id}/9/heartbeat")).status_code == 404


async def test_a_revoked_agent_is_refused_at_once(world: World) -> None:
    client, agent_id = agent(world)
    assert (await lease(client)).status_code == 204
    world.services.agents.revoke(Local(world.services).principal("admin"), agent_id)
    refused = await lease(client)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "agent_revoked"
    assert (await client.post("/api/v1/agent/tasks/1/1/heartbeat")).status_code == 401


async def test_user_credentials_never_reach_the_agent_routes(world: World) -> None:
    client = world.client(Authorization=f"Bearer {world.key('admin', Scope.ADMIN)}")
    submit(world, "true")
    assert (await lease(client)).status_code == 403
    assert (await client.post("/api/v1/agent/tasks/1/1/heartbeat")).status_code == 403
    session, csrf = await world.signed_in("admin")
    answer = await session.post("/api/v1/agent/lease", json={"free_gpus": []},
                                headers=world.unsafe(csrf))  # fmt: skip
    assert answer.status_code == 403


async def test_a_waiting_lease_is_woken_by_a_submit(world: World) -> None:
    client, _ = agent(world)
    waiting = asyncio.ensure_future(lease(client, wait_seconds=20))
    await asyncio.sleep(0.3)
    task_id = await asyncio.to_thread(submit, world, "true")
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.status_code == 200
    assert answer.json()["id"] == task_id
    too_long = await lease(client, wait_seconds=26)
    assert too_long.status_code == 422
