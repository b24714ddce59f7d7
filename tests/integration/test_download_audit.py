"""Downloads and preview fetches are audited once per actor, artifact and address within
``artifacts.download_audit_seconds``, also across two replicas of one database; the log
stays one verified chain (S16). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest

from safeboard.artifacts.service import ArtifactService
from safeboard.audit import service as audit
from safeboard.auth.permissions import Role, Scope
from safeboard.clock import utcnow
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

DATA = b"0123456789" * 30  # 300 bytes


@pytest.fixture
async def replicas(
    make_settings: Callable[..., Settings], db_url: str
) -> AsyncIterator[tuple[World, World]]:
    a = build_world(make_settings, db_url)
    b = build_world(make_settings, db_url)
    a.user("admin", Role.ADMIN)
    a.user("olga")
    yield a, b
    await a.close()
    await b.close()


def _bearer(world: World, token: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return world.client(address, Authorization=f"Bearer {token}")


async def _artifact(world: World, olga: httpx.AsyncClient) -> str:
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = (await olga.post("/api/v1/projects/mnist/runs", json={"name": "r"})).json()["id"]
    body = {"name": "clip.bin", "size": len(DATA), "sha256": _sha(DATA)}
    made = await olga.post(f"/api/v1/runs/{run}/artifacts", json=body)
    assert made.status_code == 201, made.text
    artifact_id: str = made.json()["id"]
    done = await olga.put(f"/api/v1/artifacts/{artifact_id}/content", content=DATA,
                          headers={"Upload-Offset": "0",
                                   "Content-Type": "application/octet-stream"})  # fmt: skip
    assert done.status_code == 200, done.text
    return artifact_id


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _downloads(world: World, artifact_id: str) -> list[dict[str, Any]]:
    return [
        {"actor": e.actor, "address": e.address, **e.detail}
        for e in audit.list_entries(world.services.engine, limit=10_000)
        if e.action == "artifact.downloaded" and e.target == f"artifact:{artifact_id}"
    ]


async def test_three_hundred_range_requests_make_one_entry(
    replicas: tuple[World, World],
) -> None:
    a, _ = replicas
    olga_key = a.key("olga")
    olga = _bearer(a, olga_key)
    artifact_id = await _artifact(a, olga)
    path = f"/api/v1/artifacts/{artifact_id}/content"
    for i in range(300):
        got = await olga.get(path, headers={"Range": f"bytes={i}-{i}"})
        assert got.status_code == 206
        assert got.content == DATA[i : i + 1]
    (entry,) = _downloads(a, artifact_id)
    assert entry["range"] == "0-0"  # the first request's, standing for the window
    assert entry["repeats_within_s"] == 60
    assert entry["actor"] == f"user:olga (key:{olga_key.split('_')[1]})"

    # Another credential, another address: each is told apart.
    assert (await _bearer(a, a.key("olga")).get(path)).status_code == 200
    assert (await _bearer(a, olga_key, "10.0.0.7").get(path)).status_code == 200
    assert len(_downloads(a, artifact_id)) == 3

    # Once the window has passed, the next download is a new entry.
    artifacts: ArtifactService = a.services.artifacts
    artifacts.clock = lambda: utcnow() + timedelta(seconds=61)
    assert (await olga.get(path)).status_code == 200
    assert (await olga.get(path)).status_code == 200
    assert len(_downloads(a, artifact_id)) == 4
    assert audit.verify(a.services.engine).ok


async def test_preview_fetches_make_one_entry(replicas: tuple[World, World]) -> None:
    a, _ = replicas
    olga = _bearer(a, a.key("olga"))
    artifact_id = await _artifact(a, olga)
    reader = _bearer(a, a.key("olga", Scope.READ))
    link = (await reader.post(f"/api/v1/artifacts/{artifact_id}/preview")).json()["url"]
    browser = a.client()
    for i in range(50):
        got = await browser.get(link, headers={"Range": f"bytes={i}-{i + 9}"})
        assert got.status_code == 206
    entries = _downloads(a, artifact_id)
    assert [(e["actor"], e["range"]) for e in entries] == [("user:olga (preview link)", "0-9")]


async def test_replicas_downloading_at_once_make_one_entry(
    replicas: tuple[World, World],
) -> None:
    """Forty requests at once, half through each replica: the check runs under the
    audit log's append lock, so exactly one entry, and the chain verifies."""
    a, b = replicas
    token = a.key("olga")
    artifact_id = await _artifact(a, _bearer(a, token))
    path = f"/api/v1/artifacts/{artifact_id}/content"
    clients = [_bearer(a, token), _bearer(b, token)]
    statuses: list[int] = []

    async def fetch(i: int) -> None:
        got = await clients[i % 2].get(path, headers={"Range": f"bytes={i}-{i}"})
        statuses.append(got.status_code)

    async with anyio.create_task_group() as group:
        for i in range(40):
            group.start_soon(fetch, i)
    assert statuses == [206] * 40
    assert len(_downloads(a, artifact_id)) == 1
    assert audit.verify(b.services.engine).ok


async def test_zero_records_every_request(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    world = build_world(make_settings, db_url, artifacts={"download_audit_seconds": 0})
    try:
        world.user("olga")
        olga = _bearer(world, world.key("olga"))
        artifact_id = await _artifact(world, olga)
        for i in range(5):
            path = f"/api/v1/artifacts/{artifact_id}/content"
            assert (await olga.get(path, headers={"Range": f"bytes={i}-{i}"})).status_code == 206
        entries = _downloads(world, artifact_id)
        assert [e["range"] for e in entries] == ["0-0", "1-1", "2-2", "3-3", "4-4"]
        assert "repeats_within_s" not in entries[0]
    finally:
        await world.close()
