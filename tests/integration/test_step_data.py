"""Histograms, image series and text per step (issue 17) against the in-process app, on
SQLite and PostgreSQL: a batch stored once (R1), its bounds refused with a 4xx that names
the field, the reads of the run page, and what the SDK logs reaching them through its
spool and `safeboard sync`."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import sqlalchemy as sa

import safeboard
from safeboard.auth.permissions import Role, Scope
from safeboard.ids import new_id
from safeboard.sdk.sync import sync_all
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    built.user("eve", Role.MEMBER)
    yield built
    await built.close()


async def _run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post("/api/v1/projects/mnist/runs", json={"name": "base"})
    assert run.status_code == 201, run.text
    return olga, run.json()["id"]


def _histogram(key: str, step: int, counts: list[float], lo: float = 0.0) -> dict[str, Any]:
    edges = [lo + i for i in range(len(counts) + 1)]
    return {"key": key, "step": step, "time": 1.7e9 + step, "edges": edges, "counts": counts}


def _batch(**parts: Any) -> dict[str, Any]:
    return {"batch_id": new_id(), "histograms": [], "texts": [], **parts}


async def test_a_batch_is_stored_once_and_read_back(world: World) -> None:
    olga, run_id = await _run(world)
    batch = _batch(
        histograms=[_histogram("w", s, [1, 2, 4, 2, 1], lo=s) for s in range(0, 50, 10)],
        texts=[{"key": "notes", "step": 3, "time": 1.7e9, "text": "<b>hi</b> & *bye*"}],
    )
    first = await olga.post(f"/api/v1/runs/{run_id}/steps", json=batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"batch_id": batch["batch_id"], "stored": 6, "duplicate": False}
    # A retry (the answer was lost): acknowledged, not stored again.
    again = await olga.post(f"/api/v1/runs/{run_id}/steps", json=batch)
    assert again.json() == {"batch_id": batch["batch_id"], "stored": 0, "duplicate": True}

    keys = (await olga.get(f"/api/v1/runs/{run_id}/steps")).json()
    assert keys == {"run_id": run_id, "histograms": {"w": 5}, "texts": {"notes": 1}}
    dist = (await olga.get(f"/api/v1/runs/{run_id}/distribution?histogram=w&steps=3")).json()
    assert dist["total_steps"] == 5
    assert dist["steps"] == [0, 20, 40]  # evenly spread, first and last kept
    assert dist["basis_points"][0] == 0
    assert dist["basis_points"][-1] == 10000
    lows = [p[0] for p in dist["percentiles"]]
    highs = [p[-1] for p in dist["percentiles"]]
    medians = [p[4] for p in dist["percentiles"]]
    assert lows == [0, 20, 40]
    assert highs == [5, 25, 45]
    assert medians == [2.5, 22.5, 42.5]

    at = (await olga.get(f"/api/v1/runs/{run_id}/histogram?histogram=w&step=25")).json()
    assert at["step"] == 20
    assert at["counts"] == [1, 2, 4, 2, 1]
    assert at["edges"] == [20, 21, 22, 23, 24, 25]
    last = (await olga.get(f"/api/v1/runs/{run_id}/histogram?histogram=w")).json()
    assert last["step"] == 40
    missing = await olga.get(f"/api/v1/runs/{run_id}/histogram?histogram=nope")
    assert missing.status_code == 404

    texts = (await olga.get(f"/api/v1/runs/{run_id}/texts?text=notes")).json()
    assert texts["texts"] == [{"step": 3, "time": 1.7e9, "text": "<b>hi</b> & *bye*"}]
    assert texts["next_step"] is None


async def test_a_later_batch_replaces_a_key_at_the_same_step(world: World) -> None:
    olga, run_id = await _run(world)
    for counts in ([1, 1], [0, 5]):
        answer = await olga.post(
            f"/api/v1/runs/{run_id}/steps", json=_batch(histograms=[_histogram("w", 7, counts)])
        )
        assert answer.status_code == 200, answer.text
    at = (await olga.get(f"/api/v1/runs/{run_id}/histogram?histogram=w&step=7")).json()
    assert at["counts"] == [0, 5]
    keys = (await olga.get(f"/api/v1/runs/{run_id}/steps")).json()
    assert keys["histograms"] == {"w": 1}


async def test_extreme_edges_give_finite_percentiles(world: World) -> None:
    olga, run_id = await _run(world)
    wide = {"key": "w", "step": 0, "time": 0, "edges": [-1e308, 0, 1e308], "counts": [1, 1]}
    stored = await olga.post(f"/api/v1/runs/{run_id}/steps", json=_batch(histograms=[wide]))
    assert stored.status_code == 200, stored.text
    dist = await olga.get(f"/api/v1/runs/{run_id}/distribution?histogram=w")
    assert dist.status_code == 200, dist.text
    (values,) = dist.json()["percentiles"]
    assert values[0] == -1e308
    assert values[4] == 0
    assert values[-1] == 1e308


async def test_texts_come_a_page_at_a_time(world: World) -> None:
    olga, run_id = await _run(world)
    texts = [{"key": "t", "step": s, "time": 1.0, "text": f"step {s}"} for s in range(5)]
    assert (await olga.post(f"/api/v1/runs/{run_id}/steps", json=_batch(texts=texts))).is_success
    page = (await olga.get(f"/api/v1/runs/{run_id}/texts?text=t&limit=2")).json()
    assert [t["step"] for t in page["texts"]] == [0, 1]
    assert page["next_step"] == 2
    page = (await olga.get(f"/api/v1/runs/{run_id}/texts?text=t&start=2&limit=3")).json()
    assert [t["text"] for t in page["texts"]] == ["step 2", "step 3", "step 4"]


BAD = [
    ({"histograms": [_histogram("w", 0, [1.0] * 1025)]}, "1025"),
    ({"histograms": [{**_histogram("w", 0, [1, 2]), "edges": [0, 2, 1]}]}, "edges"),
    ({"histograms": [{**_histogram("w", 0, [1, 2]), "edges": [0, 1]}]}, "edges"),
    ({"histograms": [_histogram("w", 0, [1, -2])]}, "counts"),
    ({"histograms": [_histogram("w", 0, [1e308, 1e308])]}, "sum is finite"),
    ({"histograms": [_histogram("a/../b", 0, [1])]}, "histograms.0.key"),
    ({"histograms": [_histogram("w", 2**63, [1])]}, "step"),
    ({"texts": [{"key": "t", "step": 0, "time": 0, "text": "x" * 65537}]}, "texts.0.text"),
    ({"texts": [{"key": "t", "step": 0, "time": 0, "text": "a\x00b"}]}, "NUL"),
    ({"texts": [{"key": "t", "step": "1", "time": 0, "text": "a"}]}, "texts.0.step"),
    ({}, "at least one entry"),
    ({"batch_id": "short"}, "batch_id"),
    ({"extra": 1}, "extra"),
]


@pytest.mark.parametrize(("change", "named"), BAD)
async def test_bad_batches_are_refused_naming_the_field(
    world: World, change: dict[str, Any], named: str
) -> None:
    olga, run_id = await _run(world)
    answer = await olga.post(f"/api/v1/runs/{run_id}/steps", json={**_batch(), **change})
    assert 400 <= answer.status_code < 500, answer.text
    assert named in answer.json()["error"]["message"]
    keys = (await olga.get(f"/api/v1/runs/{run_id}/steps")).json()
    assert keys["histograms"] == {}
    assert keys["texts"] == {}


async def test_others_cannot_write_or_read(world: World) -> None:
    _, run_id = await _run(world)
    eve = world.client(Authorization=f"Bearer {world.key('eve', Scope.WRITE)}")
    body = _batch(histograms=[_histogram("w", 0, [1])])
    assert (await eve.post(f"/api/v1/runs/{run_id}/steps", json=body)).status_code == 404
    for path in ("steps", "distribution?histogram=w", "texts?text=t", "images"):
        assert (await eve.get(f"/api/v1/runs/{run_id}/{path}")).status_code == 404


async def test_what_the_sdk_logs_arrives_through_the_spool_once(world: World) -> None:
    """Offline, then `safeboard sync` (twice: the second finds nothing to send)."""
    _, _ = await _run(world)
    root = Path(tempfile.mkdtemp(dir=world.settings.data_dir))
    try:
        run = safeboard.init("mnist", mode="offline", spool_dir=root, quiet=True)
        rng = np.random.default_rng(0)
        for step in range(0, 300, 100):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.log_histogram("weights", rng.normal(step / 100, 1, 1000))
            run.log_histogram("grads", counts=[1, 3, 1], edges=[-1, 0, 1, 2], step=step)
            run.log_text("samples", f"<script>alert({step})</script>", step=step)
            run.log_image("digits", np.full((4, 6), step % 256, dtype=np.uint8), step)
        run.log_image(np.zeros((2, 2), dtype=np.uint8), 5)  # the earlier form: one artifact
        run.finish()
        key = world.key("olga", Scope.WRITE)
        transport = _AppTransport(world.app)
        for _ in range(2):
            await anyio.to_thread.run_sync(
                lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    keys = (await olga.get(f"/api/v1/runs/{run.id}/steps")).json()
    assert keys["histograms"] == {"grads": 3, "weights": 3}
    assert keys["texts"] == {"samples": 3}
    dist = (await olga.get(f"/api/v1/runs/{run.id}/distribution?histogram=weights")).json()
    assert dist["steps"] == [0, 100, 200]
    medians = [p[4] for p in dist["percentiles"]]
    assert [round(m) for m in medians] == [0, 1, 2]
    one = (await olga.get(f"/api/v1/runs/{run.id}/histogram?histogram=weights&step=0")).json()
    assert len(one["counts"]) == 64
    assert sum(one["counts"]) == 1000
    texts = (await olga.get(f"/api/v1/runs/{run.id}/texts?text=samples")).json()
    assert texts["texts"][2]["text"] == "<script>alert(200)</script>"
    images = (await olga.get(f"/api/v1/runs/{run.id}/images")).json()
    assert images["images"] == {"digits": 3, "image-5.png": 1}
    series = (await olga.get(f"/api/v1/runs/{run.id}/images/series?image=digits")).json()
    assert [s["step"] for s in series["steps"]] == [0, 100, 200]
    artifact = series["steps"][1]["artifact_id"]
    got = await olga.get(f"/api/v1/artifacts/{artifact}")
    assert got.json()["kind"] == "image"
    assert got.json()["content_type"] == "image/png"


class _LosesFirstAnswer(_AppTransport):
    """The server stores the first batch of histograms and texts, and its answer is lost
    on the way back (a connection cut after the commit)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.lost = 0
        self.answers: list[dict[str, Any]] = []  # the answers that came back

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not (request.url.path.endswith("/steps") and request.method == "POST"):
            return response
        if not self.lost:
            self.lost += 1
            raise httpx.ReadError("connection reset after the request", request=request)
        self.answers.append(json.loads(response.read()))
        return response


async def test_a_batch_whose_answer_was_lost_is_stored_once_when_sent_again(
    world: World,
) -> None:
    """R1 through the SDK: the spooled record keeps its id, `safeboard sync` sends it
    again after the lost answer, and the server acknowledges it without storing it twice."""
    await _run(world)
    root = Path(tempfile.mkdtemp(dir=world.settings.data_dir))
    try:
        run = safeboard.init("mnist", mode="offline", spool_dir=root, quiet=True)
        run.log_histogram("w", counts=[1, 2], edges=[0, 1, 2], step=4)
        run.log_text("t", "once", step=4)
        run.finish()
        key = world.key("olga", Scope.WRITE)
        transport = _LosesFirstAnswer(world.app)
        results = []
        for _ in range(2):
            results += await anyio.to_thread.run_sync(
                lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert transport.lost == 1
    assert results[0].error is not None  # the first sync: the answer never came
    assert results[-1].done
    with world.services.engine.connect() as conn:
        batches = conn.execute(
            sa.text("SELECT points FROM ingest_batches WHERE run_id = :r"), {"r": run.id}
        ).all()
    # One batch of both entries, or two when the sender spooled the first alone: each
    # stored once, the one whose answer was lost acknowledged as a duplicate when resent.
    assert sum(b[0] for b in batches) == 2
    assert transport.answers[0]["duplicate"]
    assert transport.answers[0]["stored"] == 0
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    keys = (await olga.get(f"/api/v1/runs/{run.id}/steps")).json()
    assert keys["histograms"] == {"w": 1}
    assert keys["texts"] == {"t": 1}
