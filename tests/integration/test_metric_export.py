"""Every point of a key, streamed (issue 13, P10): the streamed body is byte for byte
what one body of the merged history was, for histories logged out of order, with ties,
NaN and infinities, cut by start and end, whatever the window size. On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from safeboard.auth.permissions import Role
from safeboard.metrics import repository
from safeboard.metrics.codec import merge, to_json_floats
from safeboard.metrics.export import Export, ExportChanged, plan
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_metric_reads import client_for, log

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga", Role.MEMBER)
    yield built
    await built.close()


def whole_body(world: World, run_id: str, key: str, start: int | None, end: int | None) -> bytes:
    """The answer before streaming: one body of the merged series."""
    with world.services.engine.connect() as conn:
        series = merge(repository.load_chunks(conn, run_id, key, start, end), start, end)
    values: Any = series.values
    if not np.all(np.isfinite(values)):
        values = to_json_floats(values)
    body = {"key": key, "steps": series.steps, "times": series.times, "values": values}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def streamed(world: World, run_id: str, key: str, start: int | None, end: int | None,
             budget: int) -> bytes:  # fmt: skip
    engine = world.services.engine
    with engine.connect() as conn:
        spans = repository.chunk_spans(conn, run_id, key, start, end)
    return b"".join(Export(engine, run_id, key, plan(spans, start, end, budget)).json())


batches = st.lists(
    st.lists(
        st.tuples(
            st.integers(0, 60),
            st.sampled_from([0.5, -1.25, 3.0, "NaN", "Infinity", "-Infinity", 1e300]),
        ),
        min_size=1,
        max_size=12,
    ),
    min_size=0,
    max_size=8,
)
bounds = st.none() | st.integers(0, 65)


async def test_the_stream_is_the_merged_history(world: World) -> None:
    """Out-of-order and overlapping batches, ties (the later batch's point last), special
    values: for windows of 1, 3, 10 and many points, with and without start and end."""
    olga = client_for(world, "olga")

    @hypothesis_settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(logged=batches, start=bounds, end=bounds)
    def check(logged: list[list[tuple[int, Any]]], start: int | None, end: int | None) -> None:
        run_id = olga.create_run("p").id
        for batch in logged:
            steps = [s for s, _ in batch]
            values = [v for _, v in batch]
            times = [1.7e9 + i for i in range(len(batch))]
            log(olga, run_id, {"m": {"steps": steps, "times": times, "values": values}})
        expected = whole_body(world, run_id, "m", start, end)
        for budget in (1, 3, 10, 100_000):
            assert streamed(world, run_id, "m", start, end, budget) == expected, budget

    def go() -> None:
        olga.create_project("p")
        check()

    await anyio.to_thread.run_sync(go)
    olga.close()


async def test_the_api_streams_in_step_order(world: World) -> None:
    """Through the route: a body in pieces (no Content-Length), the same JSON shape, in
    step order; the typed client reads it."""
    olga = client_for(world, "olga")

    def go() -> tuple[str, Any]:
        olga.create_project("p")
        run_id = olga.create_run("p").id
        log(olga, run_id, {"m": {"steps": [5, 6], "times": [1.0, 2.0], "values": [5.0, 6.0]}})
        log(olga, run_id, {"m": {"steps": [0, 9], "times": [3.0, 4.0], "values": [0.0, 9.0]}})
        points = olga.points(run_id, "m")
        assert (points.steps, points.values) == ((0, 5, 6, 9), (0.0, 5.0, 6.0, 9.0))
        assert points.times == (3.0, 1.0, 2.0, 4.0)
        return run_id, olga.points(run_id, "m", start=6).steps

    run_id, cut = await anyio.to_thread.run_sync(go)
    assert cut == (6, 9)
    async with world.client() as http:
        answer = await http.get(
            f"/api/v1/runs/{run_id}/points",
            params={"metric": "m"},
            headers={"Authorization": f"Bearer {world.key('olga')}"},
        )
    assert answer.status_code == 200
    assert "content-length" not in answer.headers
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "key": "m",
        "steps": [0, 5, 6, 9],
        "times": [3.0, 1.0, 2.0, 4.0],
        "values": [0.0, 5.0, 6.0, 9.0],
    }
    olga.close()


async def test_an_export_of_a_deleted_run_is_cut_not_finished(world: World) -> None:
    """Chunks deleted after the listing: the stream stops with an error instead of
    ending with columns of different lengths."""
    olga = client_for(world, "olga")

    def go() -> None:
        olga.create_project("p")
        run_id = olga.create_run("p").id
        for first in (0, 10, 20):
            steps = list(range(first, first + 10))
            log(olga, run_id, {"m": {"steps": steps, "times": steps, "values": steps}})
        engine = world.services.engine
        with engine.connect() as conn:
            spans = repository.chunk_spans(conn, run_id, "m", None, None)
        body = Export(engine, run_id, "m", plan(spans, None, None, 10)).json()
        assert next(body).startswith(b'{"key":"m"')
        assert next(body) == b"0,1,2,3,4,5,6,7,8,9"
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM metric_chunks WHERE first_step = 10")
        with pytest.raises(ExportChanged):
            list(body)

    await anyio.to_thread.run_sync(go)
    olga.close()
