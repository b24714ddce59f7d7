"""Issue 16's "Run again" and the Agents page through the real app, on SQLite and
PostgreSQL: a task's parameter overrides (stored, in the lease, bounded), a new task from
a task's run with the same code snapshot, env and secrets and its own token, inputs
checked (kinds against the run's config, sizes, shapes: 422, never 5xx), who may use it;
the agents list's current tasks and busy GPUs; the Agents page for admins only (404)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}
ARCHIVE = b"\x1f\x8b" + b"run again" * 10
DIGEST = hashlib.sha256(ARCHIVE).hexdigest()
GPUS = [
    {"index": 0, "uuid": "GPU-aaaa", "model": "NVIDIA H100", "memory_mib": 81559},
    {"index": 1, "uuid": "GPU-bbbb", "model": "NVIDIA H100", "memory_mib": 81559},
]
DEEP: dict[str, Any] = {}
_level = DEEP
for _ in range(40):
    _level["x"] = {}
    _level = _level["x"]
CONFIG = {"lr": 0.1, "epochs": 3, "model": {"name": "resnet", "pretrained": True}, "tags": [1]}


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    for name in ("alice", "bob", "carol"):
        built.user(name, Role.MEMBER)
    built.user("admin", Role.ADMIN)
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
    assert (await client.put(f"/api/v1/projects/p/code/{DIGEST}", content=ARCHIVE)).is_success
    return client


async def ran(
    world: World, alice: httpx.AsyncClient, **spec: Any
) -> tuple[dict[str, Any], httpx.AsyncClient]:
    """A task submitted, leased by an agent with two GPUs, its script's config stored
    through its token, and finished: what a task's run looks like to "Run again"."""
    body = {"command": ["python", "train.py", "--seed", "1"], "code_sha256": DIGEST,
            "env": {"MODE": "fast"}, "secrets": {"WANDB_KEY": "s3cret-value"}, "gpus": 1,
            **spec}  # fmt: skip
    made = await alice.post("/api/v1/projects/p/tasks", json=body)
    assert made.status_code == 201, made.text
    agent = world.client(Authorization=f"Bearer {world.agent()}")
    hello = {"hostname": "gpu-1", "version": "test", "gpus": GPUS}
    assert (await agent.post("/api/v1/agent/hello", json=hello)).status_code == 200
    leased = await agent.post("/api/v1/agent/lease", json={"free_gpus": ["GPU-aaaa", "GPU-bbbb"]})
    assert leased.status_code == 200, leased.text
    token = world.client(Authorization=f"Bearer {leased.json()['task_token']}")
    run_id = made.json()["run_id"]
    assert (await token.patch(f"/api/v1/runs/{run_id}", json={"config": CONFIG})).is_success
    return {**made.json(), "lease": leased.json()}, agent


async def test_params_go_with_the_task_and_its_lease(
    world: World, alice: httpx.AsyncClient
) -> None:
    task, agent = await ran(world, alice, params={"lr": 0.5})
    assert task["params"] == {"lr": 0.5}
    assert task["lease"]["params"] == {"lr": 0.5}
    shown = (await alice.get(f"/api/v1/tasks/{task['id']}")).json()
    assert shown["params"] == {"lr": 0.5}
    ended = await agent.post(f"/api/v1/agent/tasks/{task['id']}/1/events",
                             json={"kind": "exited", "exit_code": 0})  # fmt: skip
    assert ended.status_code == 200, ended.text
    retried = await alice.post(f"/api/v1/tasks/{task['id']}/retry")
    assert retried.json()["params"] == {"lr": 0.5}  # a retry runs the same parameters


async def test_run_again_keeps_code_env_and_secrets_with_the_edits(
    world: World, alice: httpx.AsyncClient
) -> None:
    task, agent = await ran(world, alice, params={"epochs": 3})
    edits = {"command": ["python", "train.py", "--seed", "2"], "params": {"lr": 0.01,
             "model": {"name": "vit"}}, "gpus": 0, "labels": ["fast"], "priority": 5,
             "max_seconds": 600, "name": "again"}  # fmt: skip
    made = await alice.post(f"/api/v1/tasks/{task['id']}/run-again", json=edits)
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["id"] != task["id"]
    assert new["run_id"] != task["run_id"]
    assert new["code_sha256"] == DIGEST
    assert new["env"] == {"MODE": "fast"}
    assert new["secret_names"] == ["WANDB_KEY"]
    assert new["command"] == edits["command"]
    assert new["params"] == edits["params"]
    assert (new["gpus"], new["labels"], new["priority"], new["max_seconds"]) == (
        0,
        ["fast"],
        5,
        600,
    )
    assert (await alice.get(f"/api/v1/runs/{new['run_id']}")).json()["name"] == "again"
    # Its own lease: the same secrets, its own token, the new parameters.
    await agent.post(f"/api/v1/agent/tasks/{task['id']}/1/events",
                     json={"kind": "exited", "exit_code": 0})  # fmt: skip
    second = await agent.post("/api/v1/agent/lease", json={"free_gpus": [], "labels": ["fast"]})
    assert second.status_code == 200, second.text
    lease = second.json()
    assert lease["id"] == new["id"]
    assert lease["params"] == edits["params"]
    assert lease["secrets"] == {"WANDB_KEY": "s3cret-value"}
    assert lease["task_token"] != task["lease"]["task_token"]
    other = world.client(Authorization=f"Bearer {lease['task_token']}")
    assert (await other.get(f"/api/v1/runs/{task['run_id']}")).status_code == 404  # scoped


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"params": {"lr": "fast"}}, "params.lr: a number, as in the run's config"),
        ({"params": {"epochs": True}}, "params.epochs: a number"),
        ({"params": {"model": {"pretrained": 1}}}, "params.model.pretrained: true or false"),
        ({"params": {"model": "x"}}, "params.model: an object"),
        ({"params": {"tags": {"a": 1}}}, "params.tags: a list"),
        ({"params": {"big": "x" * 70_000}}, "params"),
        ({"params": {"deep": DEEP}}, "params"),
        ({"params": []}, "body.params: must be an object"),
        ({"params": {"lr": 0.1}, "command": []}, "command"),
        ({"params": {}, "command": ["python"], "gpus": -1}, "gpus"),
        ({"params": {}, "command": ["python"], "labels": ["bad label"]}, "labels"),
        ({"params": {}, "command": ["python"], "env": {"X": "1"}}, "env"),
        ({"params": {}, "command": ["\x00"]}, "command"),
    ],
)
async def test_bad_edits_are_refused_with_422(
    world: World, alice: httpx.AsyncClient, edits: dict[str, Any], message: str
) -> None:
    task, _ = await ran(world, alice)
    body = {"command": ["python", "train.py"], **edits}
    answer = await alice.post(f"/api/v1/tasks/{task['id']}/run-again", json=body)
    assert answer.status_code == 422, answer.text
    assert message in answer.text
    listed = (await alice.get("/api/v1/tasks", params={"project": "p"})).json()["tasks"]
    assert len(listed) == 1  # nothing queued


async def test_who_may_run_again(world: World, alice: httpx.AsyncClient) -> None:
    task, _ = await ran(world, alice)
    body = {"command": ["python"], "params": {}}
    bob = as_user(world, "bob")  # a viewer of p
    assert (await bob.post(f"/api/v1/tasks/{task['id']}/run-again", json=body)).status_code == 403
    carol = as_user(world, "carol")  # no grant: the task does not exist for her
    assert (await carol.post(f"/api/v1/tasks/{task['id']}/run-again", json=body)).status_code == 404
    token = world.client(Authorization=f"Bearer {task['lease']['task_token']}")
    assert (await token.post(f"/api/v1/tasks/{task['id']}/run-again", json=body)).status_code == 403
    assert (await alice.post("/api/v1/tasks/999999/run-again", json=body)).status_code == 404


async def test_agents_list_current_tasks_and_busy_gpus(
    world: World, alice: httpx.AsyncClient
) -> None:
    task, _ = await ran(world, alice)
    admin = as_user(world, "admin")
    listed = (await admin.get("/api/v1/agents")).json()
    busy = [a for a in listed if a["current_tasks"]]
    assert len(busy) == 1
    (current,) = busy[0]["current_tasks"]
    assert current == {"task_id": task["id"], "attempt": 1, "project": "p",
                       "run_id": task["run_id"], "state": "leased",
                       "gpus": task["lease"]["gpus"]}  # fmt: skip
    assert busy[0]["busy_gpus"] == task["lease"]["gpus"]
    assert len(task["lease"]["gpus"]) == 1


async def test_agents_page_is_for_admins(world: World, alice: httpx.AsyncClient) -> None:
    task, _ = await ran(world, alice)
    admin, _ = await world.signed_in("admin")
    page = await admin.get("/admin/agents", headers=HTML)
    assert page.status_code == 200, page.text
    expected = ("gpu-1", "NVIDIA H100, 80 GiB", "busy", "idle", f"task {task['id']}",
                'data-action="revoke"', "Create a join string", 'href="/admin/agents"')  # fmt: skip
    for text in expected:
        assert text in page.text, text
    member, _ = await world.signed_in("alice")
    refused = await member.get("/admin/agents", headers=HTML)
    assert refused.status_code == 404
    assert "/admin/agents" not in (await member.get("/account", headers=HTML)).text


async def test_run_page_offers_run_again_to_writers_of_a_task_run(
    world: World, alice: httpx.AsyncClient
) -> None:
    task, _ = await ran(world, alice, params={"epochs": 3})
    grant = await alice.put("/api/v1/projects/p/grants/carol", json={"role": "editor"})
    assert grant.is_success
    carol, _ = await world.signed_in("carol")
    run = await carol.get(f"/runs/{task['run_id']}", headers=HTML)
    assert f'href="/runs/{task["run_id"]}/run-again"' in run.text
    form = await carol.get(f"/runs/{task['run_id']}/run-again", headers=HTML)
    assert form.status_code == 200, form.text
    for text in ("python\ntrain.py\n--seed\n1", 'aria-label="model.name"', 'value="resnet"',
                 'data-kind="bool"', 'data-kind="json"', "&quot;epochs&quot;: 3"):  # fmt: skip
        assert text in form.text, text
    bob, _ = await world.signed_in("bob")  # a viewer: no button, no form
    assert "run-again" not in (await bob.get(f"/runs/{task['run_id']}", headers=HTML)).text
    assert (await bob.get(f"/runs/{task['run_id']}/run-again", headers=HTML)).status_code == 403
    made = await alice.post("/api/v1/projects/p/runs", json={"name": "by hand"})
    plain = made.json()["id"]
    assert "run-again" not in (await carol.get(f"/runs/{plain}", headers=HTML)).text
    assert (await carol.get(f"/runs/{plain}/run-again", headers=HTML)).status_code == 404
