"""A run's new histogram, text and image steps reach its live stream as ``event: media``
(each key's last step; the run page's media.js reads those panels again), recorded like
every live event, so a stream that reconnects with ``Last-Event-ID`` receives them. A
batch sent again, and an artifact that is not a series' image, announce nothing. On SQLite
and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from safeboard.sdk.images import pixels_of, png_bytes
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.sse import OpenStream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    built.services.events.start()  # as the app's start does (PostgreSQL: LISTEN)
    yield built
    built.services.events.stop()
    await built.close()


async def _upload(client: httpx.AsyncClient, run_id: str, data: bytes, **spec: Any) -> None:
    body = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **spec}
    declared = await client.post(f"/api/v1/runs/{run_id}/artifacts", json=body)
    assert declared.status_code == 201, declared.text
    sent = await client.put(
        f"/api/v1/artifacts/{declared.json()['id']}/content", content=data,
        headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert sent.json()["state"] == "ready"


def _media(stream: OpenStream) -> list[dict[str, Any]]:
    return [data["data"] for kind, data in stream.events() if kind == "media"]


async def test_new_media_steps_are_announced_and_replayed(world: World) -> None:
    bearer = {"Authorization": f"Bearer {world.key('olga')}"}
    client = world.client(**bearer)
    assert (await client.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run_id = (await client.post("/api/v1/projects/mnist/runs", json={"name": "r"})).json()["id"]
    path = f"/api/v1/runs/{run_id}/events"
    stream = await OpenStream(world.app, world.base_url, path, bearer).open()

    histogram = {"key": "weights", "time": 0, "edges": [0, 1, 2], "counts": [1, 2]}
    batch = {
        "batch_id": "media-batch-1",
        "histograms": [{**histogram, "step": 5}, {**histogram, "step": 3}],
        "texts": [{"key": "notes", "step": 4, "time": 0, "text": "hello"}],
    }
    for _ in range(2):  # the second time: a duplicate, stored and announced once
        sent = await client.post(f"/api/v1/runs/{run_id}/steps", json=batch)
        assert sent.status_code == 200, sent.text
    image = png_bytes(pixels_of(np.zeros((4, 4, 3), np.uint8)))
    await _upload(client, run_id, image, name="samples", kind="image",
                  content_type="image/png", step=7)  # fmt: skip
    await _upload(client, run_id, b"not an image", name="notes.txt")  # no step: not a series

    assert await stream.wait(lambda: len(_media(stream)) >= 2, 10)
    assert not await stream.wait(lambda: len(_media(stream)) > 2, 0.5)
    assert _media(stream) == [
        {"histograms": {"weights": 5}, "texts": {"notes": 4}},
        {"images": {"samples": 7}},
    ]
    first = next(event_id for event_id, kind in stream.ids() if kind == "media")
    assert first is not None
    await stream.close()

    since = {**bearer, "Last-Event-ID": str(first - 1)}
    again = await OpenStream(world.app, world.base_url, path, since).open()
    assert await again.wait(lambda: len(_media(again)) >= 2, 10)
    assert _media(again) == _media(stream)
    await again.close()
