"""Downsampled histories through the API while the roller works (metrics/roller.py): the
answer is the same before and after the rollups are made, after a resumed run logs old
steps again, and the rollups are what a long history is read from. SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from safeboard.auth.permissions import Role
from safeboard.metrics.models import MetricRollupRow
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_tracking_api import _project_with_run, batch

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga", Role.MEMBER)
    yield built
    await built.close()


def _rollup_rows(world: World) -> int:
    with world.services.engine.connect() as conn:
        table = MetricRollupRow.__table__
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


async def test_a_history_reads_the_same_before_and_after_its_rollups(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    world.services.metrics.rollups.delay = 3600.0  # rolled here, by flush(), not meanwhile
    n = 200_000
    values: list[Any] = [math.sin(s / 500) for s in range(n)]
    values[77_777] = 1e6
    values[150_001] = "NaN"
    for i in range(0, n, 50_000):
        body = batch(f"b{i:08d}", "loss", list(range(i, i + 50_000)), values[i : i + 50_000])
        assert (await olga.post(f"/api/v1/runs/{run_id}/metrics", json=body)).status_code == 200
    url = f"/api/v1/runs/{run_id}/history"
    asks: list[dict[str, Any]] = [
        {"metric": "loss", "buckets": 1000},
        {"metric": "loss", "buckets": 37},
        {"metric": "loss", "buckets": 500, "start": 12_345, "end": 98_765},
    ]

    async def read() -> list[dict[str, Any]]:
        answers = [await olga.get(url, params=ask) for ask in asks]
        assert all(a.status_code == 200 for a in answers)
        return [a.json()["metrics"]["loss"] for a in answers]

    raw = await read()
    assert _rollup_rows(world) == 0
    world.services.metrics.rollups.flush()
    assert _rollup_rows(world) > 0
    assert await read() == raw
    assert max(raw[0]["max"]) == 1e6
    assert raw[0]["last_step"][-1] == n - 1

    # A resumed run logs steps 0..2999 again: the rollups above step 0 no longer count.
    again = batch("b99999999", "loss", list(range(3000)), [-5.0] * 3000)
    assert (await olga.post(f"/api/v1/runs/{run_id}/metrics", json=again)).status_code == 200
    before = await read()
    assert min(before[0]["min"]) == -5.0
    world.services.metrics.rollups.flush()
    assert await read() == before
