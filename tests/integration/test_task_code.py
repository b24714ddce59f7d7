"""Tasks' code archives through the real app, on SQLite and PostgreSQL: uploaded by their
SHA-256 (kept once per project; a second PUT stores nothing), the digest checked, the
size bounded by ``jobs.max_code_bytes`` (413, with or without a Content-Length), who may
upload and ask (writers; never a task's token); a submit names an uploaded archive
(another: 422); the agent holding the live attempt downloads it, another agent or a
stale attempt does not."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from safeboard.agents.credentials import parse_agent_credential
from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
ARCHIVE = b"\x1f\x8b" + bytes(range(256)) * 8  # the server stores bytes, never unpacks them
DIGEST = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url, jobs={"max_code_bytes": LIMIT})
    for name in ("alice", "bob", "carol"):
        built.user(name, Role.MEMBER)
    built.user("admin", Role.ADMIN)  # enrolls the agents
    yield built
    await built.close()


def as_user(world: World, name: str) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name)}")


@pytest.fixture
async def alice(world: World) -> httpx.AsyncClient:
    client = as_user(world, "alice")
    for project in ("p", "q"):
        assert (await client.post("/api/v1/projects", json={"name": project})).status_code == 201
    granted = await client.put("/api/v1/projects/p/grants/bob", json={"role": "viewer"})
    assert granted.status_code in (200, 204), granted.text
    return client


def stored_files(world: World) -> list[Path]:
    return [p for p in world.settings.artifact_dir.rglob("*") if p.is_file()]


def code(project: str, digest: str = DIGEST) -> str:
    return f"/api/v1/projects/{project}/code/{digest}"


async def test_upload_once_then_submit(world: World, alice: httpx.AsyncClient) -> None:
    before = (await alice.get(code("p"))).json()
    assert before == {"sha256": DIGEST, "uploaded": False, "size": None, "max_bytes": LIMIT}
    made = await alice.put(code("p"), content=ARCHIVE)
    assert made.status_code == 201, made.text
    assert made.json()["size"] == len(ARCHIVE)
    assert (await alice.get(code("p"))).json()["uploaded"] is True
    assert len(stored_files(world)) == 1
    again = await alice.put(code("p"), content=b"not read: the project holds it")
    assert again.status_code == 200, again.text
    assert len(stored_files(world)) == 1  # stored once per project

    body = {"command": ["python", "train.py"], "code_sha256": DIGEST}
    task = await alice.post("/api/v1/projects/p/tasks", json=body)
    assert task.status_code == 201, task.text
    assert task.json()["code_sha256"] == DIGEST
    retried = await alice.post(f"/api/v1/tasks/{task.json()['id']}/cancel")
    assert retried.status_code == 200
    again_task = await alice.post(f"/api/v1/tasks/{task.json()['id']}/retry")
    assert again_task.json()["code_sha256"] == DIGEST  # a retry runs the same code
    # Uploaded to p, not to q; a digest never uploaded: 422 with what to do.
    for project, digest in (("q", DIGEST), ("p", "0" * 64)):
        refused = await alice.post(f"/api/v1/projects/{project}/tasks",
                                   json={"command": ["true"], "code_sha256": digest})  # fmt: skip
        assert refused.status_code == 422, refused.text
        assert "was not uploaded to project" in refused.json()["error"]["message"]
    plain = await alice.post("/api/v1/projects/p/tasks", json={"command": ["true"]})
    assert plain.json()["code_sha256"] is None


async def test_digest_and_size_are_checked(world: World, alice: httpx.AsyncClient) -> None:
    wrong = await alice.put(code("p", "a" * 64), content=ARCHIVE)
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["code"] == "checksum_mismatch"
    big = b"x" * (LIMIT + 1)
    over = await alice.put(code("p", hashlib.sha256(big).hexdigest()), content=big)
    assert over.status_code == 413, over.text
    assert "jobs.max_code_bytes" in over.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(LIMIT // 4096 + 2):
            yield b"y" * 4096

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunked():
            yield chunk

    digest = hashlib.sha256(b"".join(chunked())).hexdigest()
    streamed = await alice.put(code("p", digest), content=stream())
    assert streamed.status_code == 413, streamed.text
    for bad in ("XYZ", "A" * 64, "0" * 63):
        assert (await alice.put(code("p", bad), content=ARCHIVE)).status_code == 422
        assert (await alice.get(code("p", bad))).status_code == 422
    assert stored_files(world) == []  # nothing refused was kept
    assert (await alice.get(code("p", "a" * 64))).json()["uploaded"] is False


async def test_who_may_upload(world: World, alice: httpx.AsyncClient) -> None:
    bob, carol = as_user(world, "bob"), as_user(world, "carol")
    assert (await bob.put(code("p"), content=ARCHIVE)).status_code == 403  # a viewer
    assert (await bob.get(code("p"))).status_code == 403
    assert (await carol.put(code("p"), content=ARCHIVE)).status_code == 404  # no grant
    assert (await carol.get(code("p"))).status_code == 404
    assert (await world.client().get(code("p"))).status_code == 401
    assert stored_files(world) == []


async def test_the_leasing_agent_downloads_it(world: World, alice: httpx.AsyncClient) -> None:
    assert (await alice.put(code("p"), content=ARCHIVE)).status_code == 201
    body = {"command": ["python", "t.py"], "code_sha256": DIGEST}
    made = await alice.post("/api/v1/projects/p/tasks", json=body)
    task_id = made.json()["id"]
    agents = []
    for _ in range(2):
        credential = world.agent()
        assert parse_agent_credential(credential) is not None
        agents.append(world.client(Authorization=f"Bearer {credential}"))
    one, other = agents
    leased = await one.post("/api/v1/agent/lease", json={"free_gpus": []})
    assert leased.json()["code_sha256"] == DIGEST
    # The task's own token reaches its run, never the project's code (S14).
    task_token = world.client(Authorization=f"Bearer {leased.json()['task_token']}")
    assert (await task_token.get(code("p"))).status_code == 403
    assert (await task_token.put(code("p", "b" * 64), content=b"x")).status_code == 403
    path = f"/api/v1/agent/tasks/{task_id}/1/code"
    got = await one.get(path)
    assert got.status_code == 200, got.text
    assert got.content == ARCHIVE
    assert got.headers["x-code-sha256"] == DIGEST
    assert (await other.get(path)).status_code == 404  # another agent's attempt
    assert (await alice.get(path)).status_code == 403  # a user never reaches agent routes
    assert (await one.get(f"/api/v1/agent/tasks/{task_id}/2/code")).status_code == 404
    for stored in stored_files(world):  # removed by hand from the data directory: no 500
        stored.unlink()
    assert (await one.get(path)).status_code == 404
    why = "code refused: '../x' points out of the task's directory; the command was not run"
    ended = await one.post(f"/api/v1/agent/tasks/{task_id}/1/events",
                           json={"kind": "exited", "exit_code": 125, "reason": why})  # fmt: skip
    assert ended.json() == {"state": "failed"}
    shown = (await alice.get(f"/api/v1/tasks/{task_id}")).json()
    assert (shown["reason"], shown["attempts"][0]["reason"]) == (why, why)
    assert (await one.get(path)).status_code == 409  # the attempt has ended
    plain = await alice.post("/api/v1/projects/p/tasks", json={"command": ["true"]})
    assert (await one.post("/api/v1/agent/lease", json={"free_gpus": []})).status_code == 200
    no_code = await one.get(f"/api/v1/agent/tasks/{plain.json()['id']}/1/code")
    assert no_code.status_code == 404
