"""The users' task routes (safeboard.jobs.routes), on SQLite and PostgreSQL: submit,
list, show, cancel, retry; who may do which (a viewer reads but cannot submit or cancel;
someone without a grant sees 404); bad specs refused with 422 before anything is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from safeboard.auth.permissions import Role
from safeboard.jobs.queue import AgentEvent
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.support.agents import add_agents

pytestmark = pytest.mark.anyio

SUBMIT = "/api/v1/projects/p/tasks"


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    for name in ("alice", "bob", "carol"):
        built.user(name, Role.MEMBER)
    add_agents(built.services.engine, "agent-1")  # the agent a test leases with
    yield built
    await built.close()


def as_user(world: World, name: str) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name)}")


@pytest.fixture
async def alice(world: World) -> httpx.AsyncClient:
    client = as_user(world, "alice")
    assert (await client.post("/api/v1/projects", json={"name": "p"})).status_code == 201
    granted = await client.put("/api/v1/projects/p/grants/bob", json={"role": "viewer"})
    assert granted.status_code in (200, 204), granted.text
    return client


async def submit(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(SUBMIT, json={"command": ["python", "train.py"], **body})


async def test_submit_list_show_cancel_retry(world: World, alice: httpx.AsyncClient) -> None:
    made = await submit(alice, env={"LR": "0.1"}, gpus=1, labels=["a100"], priority=3,
                        max_seconds=7200)  # fmt: skip
    assert made.status_code == 201, made.text
    task = made.json()
    assert task["state"] == "queued"
    assert task["project"] == "p"
    assert task["attempt"] == 0
    assert task["env"] == {"LR": "0.1"}
    assert task["labels"] == ["a100"]
    run = await alice.get(f"/api/v1/runs/{task['run_id']}")
    assert run.json()["status"] == "queued"
    assert run.json()["name"] == f"task-{task['id']}"

    listed = await alice.get("/api/v1/tasks", params={"project": "p", "state": "queued"})
    assert [t["id"] for t in listed.json()["tasks"]] == [task["id"]]
    assert (await alice.get("/api/v1/tasks", params={"state": "running"})).json()["tasks"] == []
    assert (await alice.get("/api/v1/tasks", params={"state": "nope"})).status_code == 422

    shown = await alice.get(f"/api/v1/tasks/{task['id']}")
    assert shown.status_code == 200
    assert shown.json()["attempts"] == []
    cancelled = await alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["cancel_requested_by"] == "alice"
    again = await alice.post(f"/api/v1/tasks/{task['id']}/cancel")  # a client's retry
    assert again.status_code == 200
    assert again.json()["state"] == "cancelled"
    assert (await alice.get(f"/api/v1/runs/{task['run_id']}")).json()["status"] == "killed"

    retried = await alice.post(f"/api/v1/tasks/{task['id']}/retry")
    assert retried.status_code == 201
    assert retried.json()["retry_of"] == task["id"]
    assert retried.json()["state"] == "queued"


async def test_cancel_of_a_running_task_waits_for_the_agent(
    world: World, alice: httpx.AsyncClient
) -> None:
    task = (await submit(alice)).json()
    queue = world.services.queue
    lease = queue.lease("agent-1", [], [])
    assert lease is not None
    assert lease.task_id == task["id"]
    queue.report(task["id"], 1, "agent-1", AgentEvent("running", pid=7))
    cancelling = await alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancelling.json()["state"] == "cancelling"
    assert queue.heartbeat(task["id"], 1, "agent-1").cancel
    queue.report(task["id"], 1, "agent-1", AgentEvent("exited", signal=15))
    shown = (await alice.get(f"/api/v1/tasks/{task['id']}")).json()
    assert shown["state"] == "cancelled"
    assert [(a["attempt"], a["agent_id"], a["state"], a["signal"]) for a in shown["attempts"]] == [
        (1, "agent-1", "cancelled", 15)
    ]


async def test_who_may_do_what(world: World, alice: httpx.AsyncClient) -> None:
    task = (await submit(alice)).json()
    bob, carol = as_user(world, "bob"), as_user(world, "carol")  # viewer; no grant
    assert (await bob.get(f"/api/v1/tasks/{task['id']}")).status_code == 200
    assert [t["id"] for t in (await bob.get("/api/v1/tasks")).json()["tasks"]] == [task["id"]]
    assert (await submit(bob)).status_code == 403
    assert (await bob.post(f"/api/v1/tasks/{task['id']}/cancel")).status_code == 403
    assert (await bob.post(f"/api/v1/tasks/{task['id']}/retry")).status_code == 403
    for call in (carol.get(f"/api/v1/tasks/{task['id']}"),
                 carol.post(f"/api/v1/tasks/{task['id']}/cancel"),
                 carol.get("/api/v1/tasks", params={"project": "p"}),
                 submit(carol)):  # fmt: skip
        assert (await call).status_code == 404
    assert (await carol.get("/api/v1/tasks")).json()["tasks"] == []
    assert (await carol.get("/api/v1/tasks/999999")).status_code == 404
    assert (await alice.get("/api/v1/tasks/0")).status_code in (404, 422)
    state = (await alice.get(f"/api/v1/tasks/{task['id']}")).json()["state"]
    assert state == "queued"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"command": []}, "command"),
    ({"command": ["x\x00y"]}, ""),
    ({"command": [""]}, "program name"),
    ({"env": {"1BAD": "x"}}, "not a variable name"),
    ({"env": {"SAFEBOARD_TASK_TOKEN": "x"}}, "reserved"),
    ({"env": {"A B": "x"}}, "not a variable name"),
    ({"gpus": -1}, ""),
    ({"gpus": "1"}, ""),
    ({"labels": ["has space"]}, "labels"),
    ({"priority": 10**9}, ""),
    ({"max_seconds": 0}, ""),
    ({"code": True}, ""),  # replaced by code_sha256 (an uploaded archive)
    ({"code_sha256": "XYZ"}, ""),
    ({"code_sha256": "0" * 64}, "was not uploaded to project p"),
    ({"unknown": 1}, ""),
]


async def test_bad_specs_are_refused(alice: httpx.AsyncClient) -> None:
    for body, message in BAD:
        answer = await alice.post(SUBMIT, json={"command": ["true"], **body})
        assert answer.status_code == 422, (body, answer.text)
        assert message in answer.json()["error"]["message"], (body, answer.text)
    assert (await alice.get("/api/v1/tasks")).json()["tasks"] == []
