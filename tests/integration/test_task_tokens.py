"""Task tokens (S14), on SQLite and PostgreSQL, through the app: a token issued by a lease
writes its own run's metrics, config, tags, notes, status and artifacts, and reads its run
and its task; it is refused on every other route (the S9 walk), on another run of the same
project and on another project; it dies when its attempt ends (the exit report, the
reaper's "lost", a cancel, the next attempt's lease) and at the task's maximum duration;
its secret is nowhere in the database, the audit log or the logs."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from safeboard import wire
from safeboard.auth.permissions import Role
from safeboard.ids import new_id
from safeboard.jobs.queue import AgentEvent, Lease
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_routes_authorization import _protected
from tests.support.agents import add_agents

pytestmark = pytest.mark.anyio

AGENT = "agent-fake-1"  # a made-up agent (tests/support/agents.py)
TOKEN = re.compile(r"sb_task_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class TaskWorld:
    world: World
    alice: httpx.AsyncClient
    clock: Clock

    async def submit(self, **body: Any) -> dict[str, Any]:
        made = await self.alice.post(
            "/api/v1/projects/p/tasks", json={"command": ["python", "train.py"], **body}
        )
        assert made.status_code == 201, made.text
        task: dict[str, Any] = made.json()
        return task

    def lease(self) -> Lease:
        lease = self.world.services.queue.lease(AGENT, [], [])
        assert lease is not None
        return lease

    def client(self, lease: Lease) -> httpx.AsyncClient:
        return self.world.client(Authorization=f"Bearer {lease.task_token}")


@pytest.fixture
async def tw(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[TaskWorld]:
    world = build_world(make_settings, db_url)
    world.user("admin", Role.ADMIN)
    world.user("alice")
    clock = Clock(datetime.now(UTC))
    services = world.services
    add_agents(services.engine, AGENT)
    services.queue.clock = services.tasks.clock = services.task_tokens.clock = clock
    alice = world.client(Authorization=f"Bearer {world.key('alice')}")
    for name in ("p", "q"):
        assert (await alice.post("/api/v1/projects", json={"name": name})).status_code == 201
    yield TaskWorld(world, alice, clock)
    await world.close()


async def _point(client: httpx.AsyncClient, run_id: str, value: float = 1.0) -> httpx.Response:
    body = wire.pack(new_id(), {"x": {"steps": [0], "times": [1.7e9], "values": [value]}})
    return await client.post(
        f"/api/v1/runs/{run_id}/metrics", content=body, headers={"Content-Type": wire.MEDIA_TYPE}
    )


async def _upload(client: httpx.AsyncClient, run_id: str, data: bytes) -> httpx.Response:
    body = {"name": "model.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    made = await client.post(f"/api/v1/runs/{run_id}/artifacts", json=body)
    if made.status_code != 201:
        return made
    return await client.put(
        f"/api/v1/artifacts/{made.json()['id']}/content",
        content=data,
        headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )


async def test_a_token_writes_and_reads_its_own_run(tw: TaskWorld) -> None:
    task = await tw.submit()
    lease = tw.lease()
    assert TOKEN.fullmatch(lease.task_token)
    assert lease.task_token not in repr(lease)
    run_id = task["run_id"]
    token = tw.client(lease)

    assert (await _point(token, run_id)).status_code == 200
    changed = await token.patch(
        f"/api/v1/runs/{run_id}",
        json={"config": {"lr": 0.1}, "tags": {"stage": "a"}, "notes": "from the task"},
    )
    assert changed.status_code == 200, changed.text
    assert (await _upload(token, run_id, b"weights" * 100)).status_code == 200
    seen = await token.get(f"/api/v1/runs/{run_id}")
    assert seen.status_code == 200
    assert seen.json()["config"] == {"lr": 0.1}
    listed = await token.get(f"/api/v1/runs/{run_id}/artifacts")
    assert [a["name"] for a in listed.json()["items"]] == ["model.bin"]
    artifact_id = listed.json()["items"][0]["id"]
    assert (await token.get(f"/api/v1/artifacts/{artifact_id}/content")).status_code == 200
    # A preview link acts for a person (S12): a task's token mints none.
    assert (await token.post(f"/api/v1/artifacts/{artifact_id}/preview")).status_code == 403
    own = await token.get(f"/api/v1/tasks/{task['id']}")
    assert own.status_code == 200
    assert own.json()["command"] == ["python", "train.py"]
    finished = await token.patch(f"/api/v1/runs/{run_id}", json={"status": "finished"})
    assert finished.status_code == 200, finished.text

    # The owner sees what the task wrote.
    run = (await tw.alice.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "finished"
    assert run["tags"] == {"stage": "a"}
    assert [m["key"] for m in run["metrics"]] == ["x"]


async def test_a_token_reaches_nothing_else(tw: TaskWorld) -> None:
    task = await tw.submit()
    other_task = await tw.submit()
    lease = tw.lease()
    token = tw.client(lease)
    sibling = (await tw.alice.post("/api/v1/projects/p/runs", json={"name": "s"})).json()["id"]
    elsewhere = (await tw.alice.post("/api/v1/projects/q/runs", json={"name": "e"})).json()["id"]

    for run_id in (sibling, elsewhere, other_task["run_id"]):
        assert (await _point(token, run_id)).status_code == 404
        assert (await token.get(f"/api/v1/runs/{run_id}")).status_code == 404
        patched = await token.patch(f"/api/v1/runs/{run_id}", json={"status": "killed"})
        assert patched.status_code == 404
        assert (await _upload(token, run_id, b"x")).status_code == 404
    refused = {
        ("POST", "/api/v1/projects/p/runs"): {"name": "new"},
        ("POST", "/api/v1/projects/q/runs"): {"name": "new"},
        ("GET", "/api/v1/projects"): None,
        ("GET", "/api/v1/projects/p"): None,
        ("GET", "/api/v1/projects/p/runs"): None,
        ("POST", "/api/v1/projects"): {"name": "mine"},
        ("GET", "/api/v1/tasks"): None,
        ("GET", f"/api/v1/tasks/{other_task['id']}"): None,
        ("POST", f"/api/v1/tasks/{task['id']}/cancel"): None,
        ("POST", f"/api/v1/tasks/{task['id']}/retry"): None,
        ("POST", "/api/v1/projects/p/tasks"): {"command": ["true"]},
        ("GET", "/api/v1/run-ids"): None,
        ("GET", "/api/v1/users"): None,
        ("GET", "/api/v1/audit"): None,
        ("GET", "/api/v1/keys"): None,
        ("GET", "/api/v1/agents"): None,
        ("POST", "/api/v1/agent/hello"): {"hostname": "x", "version": "1"},
    }
    for (method, path), body in refused.items():
        response = await token.request(method, path, json=body, params={"prefix": "ab"})
        assert response.status_code in (403, 404), (method, path, response.status_code)
    assert (await tw.alice.get(f"/api/v1/runs/{sibling}")).json()["status"] == "running"


async def test_the_route_walk_with_a_task_token(tw: TaskWorld) -> None:
    """S9 walk: with a live task token every route answers 403 or 404, or (on the routes
    of a run, whose placeholder run does not exist) 404 or 422; never 2xx, 401 or 5xx."""
    await tw.submit()
    token = tw.client(tw.lease())
    wrong = []
    for method, path, _ in _protected(tw.world.app):
        response = await token.request(method, path, json={} if method != "GET" else None)
        if (method, path) == ("GET", "/compare") and response.status_code == 200:
            assert "task:" in response.text  # no run named: a page that compares nothing
            continue
        if response.status_code not in (403, 404, 422):
            wrong.append((method, path, response.status_code))
        elif response.status_code == 403 and path.startswith("/api/"):
            assert response.json()["error"]["code"] == "forbidden", (method, path)
    assert wrong == []


async def _refused_now(token: httpx.AsyncClient, run_id: str) -> None:
    """The very next request after the change is refused (so within S14's second)."""
    response = await _point(token, run_id)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert "invalid task token" in response.json()["error"]["message"]


async def test_the_exit_report_ends_the_token(tw: TaskWorld) -> None:
    task = await tw.submit()
    lease = tw.lease()
    token = tw.client(lease)
    queue = tw.world.services.queue
    queue.report(task["id"], lease.attempt, AGENT, AgentEvent("running", pid=4242))
    assert (await _point(token, task["run_id"])).status_code == 200
    queue.report(task["id"], lease.attempt, AGENT, AgentEvent("exited", exit_code=0))
    await _refused_now(token, task["run_id"])


async def test_a_lost_attempt_ends_the_token_and_the_next_gets_its_own(tw: TaskWorld) -> None:
    task = await tw.submit()
    first = tw.lease()
    old = tw.client(first)
    assert (await _point(old, task["run_id"])).status_code == 200
    tw.clock.advance(tw.world.settings.jobs.lease_seconds + 1)  # no heartbeat since
    assert tw.world.services.queue.reap() == 1
    await _refused_now(old, task["run_id"])
    second = tw.lease()  # the retry: attempt 2
    assert second.attempt == 2
    assert second.task_token != first.task_token
    assert (await _point(tw.client(second), task["run_id"])).status_code == 200
    await _refused_now(old, task["run_id"])  # attempt 1's token stays dead


async def test_a_cancel_ends_the_token(tw: TaskWorld) -> None:
    task = await tw.submit()
    token = tw.client(tw.lease())
    assert (await _point(token, task["run_id"])).status_code == 200
    cancelled = await tw.alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancelled.json()["state"] == "cancelling"
    await _refused_now(token, task["run_id"])


async def test_a_token_never_outlives_the_maximum_duration(tw: TaskWorld) -> None:
    task = await tw.submit(max_seconds=120)
    lease = tw.lease()
    token = tw.client(lease)
    queue = tw.world.services.queue
    for _ in range(3):  # heartbeats keep the lease, not the token past its cap
        tw.clock.advance(45)
        queue.heartbeat(task["id"], lease.attempt, AGENT)
    await _refused_now(token, task["run_id"])


async def test_a_disabled_submitter_ends_the_token(tw: TaskWorld) -> None:
    task = await tw.submit()
    token = tw.client(tw.lease())
    tw.world.users.set_active("alice", active=False, actor="test")
    await _refused_now(token, task["run_id"])


async def test_forged_and_malformed_tokens_are_refused(tw: TaskWorld) -> None:
    task = await tw.submit()
    lease = tw.lease()
    token_id = lease.task_token.split("_")[2]
    for forged in (
        f"sb_task_{token_id}_{'A' * 43}",  # the right id, a wrong secret
        f"sb_task_0123456789ab_{'A' * 43}",
        "sb_task_short",
    ):
        client = tw.world.client(Authorization=f"Bearer {forged}")
        await _refused_now(client, task["run_id"])


async def test_the_secret_is_stored_nowhere(
    tw: TaskWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Only its SHA-256 is in the database; neither the audit log nor any log line (the
    access log included, even with the token in a query string) holds the secret."""
    task = await tw.submit()
    with caplog.at_level(logging.DEBUG):
        lease = tw.lease()
        token = tw.client(lease)
        secret = lease.task_token[len("sb_task_") + 13 :]  # after sb_task_<12 hex>_
        assert len(secret) == 43
        assert (await _point(token, task["run_id"])).status_code == 200
        await token.get(f"/healthz?q={lease.task_token}")
        await tw.alice.post(f"/api/v1/tasks/{task['id']}/cancel")
        await _refused_now(token, task["run_id"])
    # The server's records (the test's own HTTP client logs the URL it sent, as it was).
    lines = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("safeboard"))
    assert any(r.name == "safeboard.access" for r in caplog.records)
    assert secret not in lines
    with tw.world.services.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM task_tokens")).mappings().one()
        audit = conn.execute(sa.text("SELECT * FROM audit_log")).all()
    assert stored["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert stored["revoked_at"] is not None
    assert (stored["task_id"], stored["attempt"]) == (task["id"], 1)
    assert secret not in repr(dict(stored)) + repr(audit)
