"""Bounds on what one member can take, on SQLite and PostgreSQL: the bytes of artifacts a
user has uploaded over all projects (``artifacts.user_quota_bytes``, unfinished uploads
included, admins too), how many projects a member creates (``projects.max_per_member``,
admins exempt), and a taken project name answered alike whoever holds it (S9, S12)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from safeboard.artifacts.schemas import ArtifactIn
from safeboard.auth.permissions import Role, Scope
from safeboard.cli.local import Local
from safeboard.errors import Conflict, PayloadTooLarge
from safeboard.projects.service import ProjectService
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

USER_QUOTA = 1000


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(
        make_settings,
        db_url,
        artifacts={"project_quota_bytes": 10_000, "user_quota_bytes": USER_QUOTA},
        projects={"max_per_member": 2},
    )
    built.user("admin", Role.ADMIN)
    for name in ("olga", "vic", "eve"):
        built.user(name)
    yield built
    await built.close()


def as_user(world: World, name: str) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name, Scope.ADMIN)}")


async def _project_run(client: httpx.AsyncClient, project: str) -> str:
    assert (await client.post("/api/v1/projects", json={"name": project})).status_code == 201
    run = await client.post(f"/api/v1/projects/{project}/runs", json={"name": "r"})
    assert run.status_code == 201, run.text
    run_id: str = run.json()["id"]
    return run_id


async def _declare(client: httpx.AsyncClient, run_id: str, size: int) -> httpx.Response:
    data = b"x" * size
    body = {"name": "f.bin", "size": size, "sha256": hashlib.sha256(data).hexdigest()}
    return await client.post(f"/api/v1/runs/{run_id}/artifacts", json=body)


async def _upload(client: httpx.AsyncClient, run_id: str, size: int) -> str:
    declared = await _declare(client, run_id, size)
    assert declared.status_code == 201, declared.text
    artifact_id: str = declared.json()["id"]
    done = await client.put(
        f"/api/v1/artifacts/{artifact_id}/content",
        content=b"x" * size,
        headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 200, done.text
    return artifact_id


async def test_a_user_quota_spans_projects_and_counts_unfinished_uploads(world: World) -> None:
    olga = as_user(world, "olga")
    first, second = await _project_run(olga, "one"), await _project_run(olga, "two")
    finished = await _upload(olga, first, 600)  # finished, in one project
    assert (await _declare(olga, second, 300)).status_code == 201  # unfinished, in another
    refused = await _declare(olga, second, 101)  # 600 + 300 + 101 > 1000
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert "artifacts.user_quota_bytes" in refused.json()["error"]["message"]
    assert (await _declare(olga, second, 100)).status_code == 201  # exactly the quota
    # Another member uploading into olga's project counts against their own quota.
    grant = await olga.put("/api/v1/projects/two/grants/vic", json={"role": "editor"})
    assert grant.status_code == 204, grant.text
    vic = as_user(world, "vic")
    assert (await _declare(vic, second, 900)).status_code == 201
    # A deleted artifact gives its bytes back.
    assert (await olga.delete(f"/api/v1/artifacts/{finished}")).status_code == 204
    assert (await _declare(olga, first, 600)).status_code == 201


async def test_admins_have_a_user_quota_too(world: World) -> None:
    admin = as_user(world, "admin")
    run_id = await _project_run(admin, "big")
    assert (await _declare(admin, run_id, USER_QUOTA)).status_code == 201
    assert (await _declare(admin, run_id, 1)).status_code == 413


async def test_a_member_creates_a_bounded_number_of_projects(world: World) -> None:
    olga, admin = as_user(world, "olga"), as_user(world, "admin")
    for name in ("a1", "a2"):
        assert (await olga.post("/api/v1/projects", json={"name": name})).status_code == 201
    third = await olga.post("/api/v1/projects", json={"name": "a3"})
    assert third.status_code == 403, third.text  # not 409: the SDK reads that as "made meanwhile"
    assert "projects.max_per_member" in third.json()["error"]["message"]
    # At the bound, a taken name gets the same answer: the bound says nothing about names.
    taken = await olga.post("/api/v1/projects", json={"name": "a1"})
    assert (taken.status_code, taken.json()["error"]["message"]) == (
        403,
        third.json()["error"]["message"],
    )
    # Projects others gave her a role in do not count; admins are exempt.
    for name in ("b1", "b2", "b3"):
        assert (await admin.post("/api/v1/projects", json={"name": name})).status_code == 201
    grant = await admin.put("/api/v1/projects/b1/grants/olga", json={"role": "owner"})
    assert grant.status_code == 204
    assert (
        await as_user(world, "vic").post("/api/v1/projects", json={"name": "v1"})
    ).status_code == 201


async def test_a_taken_name_tells_only_who_can_see_the_project_more(world: World) -> None:
    """The name exists: that much creation must say. Whoever may read the project (its
    owner, a viewer, an admin) hears that it already exists; a member without a grant gets
    the words that say the name is taken and nothing more. Renaming onto it answers alike."""
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": "secret-plan"})).status_code == 201
    assert (
        await olga.put("/api/v1/projects/secret-plan/grants/vic", json={"role": "viewer"})
    ).status_code == 204
    answers: list[tuple[int, dict[str, Any]]] = []
    for name in ("olga", "vic", "eve", "admin"):
        response = await as_user(world, name).post(
            "/api/v1/projects", json={"name": "secret-plan", "description": "mine"}
        )
        error = response.json()["error"]
        answers.append((response.status_code, {k: error[k] for k in ("code", "message")}))
    exists = (409, {"code": "conflict", "message": "project 'secret-plan' already exists"})
    hidden = (409, {"code": "conflict", "message": "project name not available"})
    assert answers == [exists, exists, hidden, exists]
    eve = as_user(world, "eve")
    assert (await eve.post("/api/v1/projects", json={"name": "eves"})).status_code == 201
    renamed = await eve.patch("/api/v1/projects/eves", json={"name": "secret-plan"})
    assert (renamed.status_code, renamed.json()["error"]["message"]) == (409, hidden[1]["message"])
    # eve cannot see it otherwise: 404, as for a name nobody holds.
    eve = as_user(world, "eve")
    hidden = await eve.get("/api/v1/projects/secret-plan")
    absent = await eve.get("/api/v1/projects/no-such-plan")
    assert (hidden.status_code, absent.status_code) == (404, 404)
    assert hidden.json()["error"]["message"] == absent.json()["error"]["message"]


async def test_one_name_created_at_once_is_one_project(world: World) -> None:
    """Concurrent creations of one name: one project, the others a 409, no 500
    (PostgreSQL's unique index, not only the check before the insert). Of the losers only
    the admin may read the winner's project, so only it hears that it already exists."""
    service: ProjectService = world.services.projects
    local = Local(world.services)
    principals = {name: local.principal(name) for name in ("olga", "vic", "eve", "admin")}
    outcomes: dict[str, str] = {}
    start = threading.Barrier(len(principals))

    def create(name: str) -> None:
        start.wait()
        try:
            service.create(principals[name], "race")
            outcomes[name] = "created"
        except Conflict as exc:
            outcomes[name] = exc.message

    threads = [threading.Thread(target=create, args=(name,)) for name in principals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, said in outcomes.items() if said == "created"]
    assert len(winners) == 1, outcomes
    losers = {name: said for name, said in outcomes.items() if name != winners[0]}
    expected = dict.fromkeys(losers, "project name not available")
    if "admin" in losers:
        expected["admin"] = "project 'race' already exists"
    assert losers == expected


async def test_one_users_concurrent_declarations_count_each_other(world: World) -> None:
    """Declarations by one user in two projects at once (two project locks, so only the
    user's row serialises them): never more than the quota."""
    olga = as_user(world, "olga")
    runs = [await _project_run(olga, "c1"), await _project_run(olga, "c2")]
    service = world.services.artifacts
    principal = Local(world.services).principal("olga")
    data = b"x" * 400
    spec = ArtifactIn(name="f", size=400, sha256=hashlib.sha256(data).hexdigest())
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def declare(index: int) -> None:
        start.wait()
        try:
            service.declare(principal, runs[index % 2], spec)
            outcomes.append("declared")
        except PayloadTooLarge:
            outcomes.append("refused")

    threads = [threading.Thread(target=declare, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["declared"] * 2 + ["refused"] * 4  # 2 x 400 <= 1000 < 3 x 400
