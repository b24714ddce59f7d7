"""A task no enrolled agent could ever take (none enrolled, or none with that many GPUs
or those labels) is still queued, and the submit's answer, one task shown and the task's
page say why it waits and how to fix it (``waiting_reason``, jobs/waiting.py); nothing is
said while some agent could take it, or once the task is no longer queued."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from safeboard.agents.models import AgentRow
from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("alice", Role.MEMBER)
    yield built
    await built.close()


def enroll(world: World, agent_id: str, gpus: int | None, labels: list[str], **row: object) -> None:
    """An agent's row as its join and first hello leave it: ``gpus`` GPUs, ``labels``;
    ``gpus`` None: joined, no hello yet (its machine unknown; the join wrote its labels,
    as AgentService's join does)."""
    inventory = {"labels": sorted(labels)} if gpus is None else {
        "gpus": [{"index": i, "uuid": f"GPU-{agent_id}-{i}"} for i in range(gpus)],
        "labels": labels, "cpus": 8, "memory_mib": 1024,
    }  # fmt: skip
    row.setdefault("inventory_at", None if gpus is None else datetime.now(UTC))
    with world.services.engine.begin() as conn:
        conn.execute(sa.insert(AgentRow).values(
            id=agent_id, name=agent_id, pool="default", labels=[], secret_hash="0" * 64,
            created_at=datetime.now(UTC), created_by="test", join_token="test", version="",
            hostname="", inventory=inventory, **row,
        ))  # fmt: skip


async def test_a_task_no_agent_could_take_says_why_it_waits(world: World) -> None:
    api = world.client(Authorization=f"Bearer {world.key('alice')}")
    assert (await api.post("/api/v1/projects", json={"name": "p"})).status_code == 201

    async def submit(gpus: int, labels: list[str]) -> dict[str, object]:
        body = {"command": ["true"], "gpus": gpus, "labels": labels}
        made = await api.post("/api/v1/projects/p/tasks", json=body)
        assert made.status_code == 201, made.text
        answer: dict[str, object] = made.json()
        return answer

    alone = await submit(1, [])
    assert alone["state"] == "queued"
    assert alone["waiting_reason"] == (
        "no agent is enrolled: it runs when one joins; an admin adds one with "
        "`safeboard agent token` (then `safeboard agent join` on it)"
    )
    shown = (await api.get(f"/api/v1/tasks/{alone['id']}")).json()
    assert shown["waiting_reason"] == alone["waiting_reason"]
    alice, _ = await world.signed_in("alice")
    page = await alice.get(f"/tasks/{alone['id']}", headers=HTML)
    assert page.status_code == 200, page.text
    assert "no agent is enrolled" in page.text
    assert "safeboard agent token" in page.text

    enroll(world, "box", 2, ["h100"])
    enroll(world, "gone", 8, ["tpu"], revoked_at=datetime.now(UTC), revoked_by="admin")
    assert (await submit(4, []))["waiting_reason"] == (
        "no enrolled agent offers 4 GPU(s): it runs when one that does joins; an admin adds "
        "one with `safeboard agent token` (then `safeboard agent join` on it)"
    )
    assert str((await submit(1, ["tpu"]))["waiting_reason"]).startswith(
        "no enrolled agent offers 1 GPU(s) and the labels tpu:"
    )
    assert (await submit(2, ["h100"]))["waiting_reason"] is None
    assert (await submit(0, []))["waiting_reason"] is None
    # The first task: an agent that could take it has joined since.
    assert (await api.get(f"/api/v1/tasks/{alone['id']}")).json()["waiting_reason"] is None
    # Not queued any more: nothing to say.
    huge = await submit(8, [])
    assert huge["waiting_reason"] is not None
    assert (await api.post(f"/api/v1/tasks/{huge['id']}/cancel")).status_code == 200
    assert (await api.get(f"/api/v1/tasks/{huge['id']}")).json()["waiting_reason"] is None


async def test_an_agent_that_never_said_hello_could_take_anything(world: World) -> None:
    """Its machine is unknown until its first hello: nothing is said about it."""
    enroll(world, "new", None, [])
    api = world.client(Authorization=f"Bearer {world.key('alice')}")
    assert (await api.post("/api/v1/projects", json={"name": "p"})).status_code == 201
    made = await api.post("/api/v1/projects/p/tasks", json={"command": ["true"], "gpus": 8})
    assert made.json()["waiting_reason"] is None
