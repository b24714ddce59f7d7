"""The SDK's spool against the in-process app, on SQLite and PostgreSQL (issue 12): what
a script logs is spooled as the packed body the server stores and comes back bit for bit
after `safeboard sync`; a spool written by the previous SDK (JSON batches) is synced too."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeboard
from safeboard import wire
from safeboard.auth.permissions import Scope
from safeboard.metrics.codec import Series, merge
from safeboard.metrics.repository import load_chunks
from safeboard.sdk.spool import RunSpool
from safeboard.sdk.sync import SyncResult, sync_all
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

pytestmark = pytest.mark.anyio

OLD_SPOOL = Path(__file__).parent / "data" / "spool-v0"  # written by the SDK before packing


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    yield built
    await built.close()


async def _sync(world: World, root: Path) -> list[SyncResult]:
    key = world.key("olga", Scope.WRITE)
    transport = _AppTransport(world.app)
    return await anyio.to_thread.run_sync(
        lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
    )


def _stored(world: World, run_id: str, key: str) -> Series:
    with world.services.engine.connect() as conn:
        return merge(load_chunks(conn, run_id, key, None, None, with_times=True))


def _bits(values: np.ndarray | list[float]) -> list[int]:
    return np.asarray(values, dtype="<f8").view("<u8").tolist()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    points=st.lists(
        st.tuples(st.integers(0, 2**62), st.floats(), st.floats()), min_size=1, max_size=60
    )
)
async def test_what_is_logged_comes_back_bit_exact_through_the_spool(
    world: World, points: list[tuple[int, float, float]]
) -> None:
    """Property: any floats (NaN with its payload, infinities, -0.0, subnormals) and any
    steps logged offline are spooled packed, synced, and stored bit for bit; the times the
    spool holds are the times stored."""
    root = Path(tempfile.mkdtemp(dir=world.settings.data_dir))
    try:
        run = safeboard.init("p", mode="offline", spool_dir=root, quiet=True)
        for step, loss, acc in points:
            run.log({"loss": loss, "acc": acc}, step=step)
        run.finish()
        spool = RunSpool(root, run.id)
        assert all(path.suffix == ".sbc" for path, _ in spool.batches())
        assert spool.pending_points() == 2 * len(points)
        (result,) = await _sync(world, root)
        assert (result.done, result.points, result.dropped) == (True, 2 * len(points), 0)
        assert not (root / run.id).exists()
        order = np.argsort([s for s, _, _ in points], kind="stable")
        for index, key in ((1, "loss"), (2, "acc")):
            stored = _stored(world, run.id, key)
            assert stored.steps.tolist() == [points[i][0] for i in order]
            assert _bits(stored.values) == _bits([points[i][index] for i in order])
            assert stored.times.size == len(points)
            assert bool(np.all(np.isfinite(stored.times)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_the_spooled_times_are_the_stored_times(world: World, tmp_path: Path) -> None:
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True)
    for step in range(5):
        run.log({"loss": step / 3}, step=step)
    run.finish()
    ((_, batch),) = RunSpool(tmp_path, run.id).batches()
    spooled = wire.columns(wire.split(batch.body).data, [5])[0]
    (result,) = await _sync(world, tmp_path)
    assert result.done
    stored = _stored(world, run.id, "loss")
    assert _bits(stored.times) == _bits(spooled[1])
    assert _bits(stored.values) == _bits([s / 3 for s in range(5)])


async def test_a_spool_written_by_the_previous_sdk_is_synced(world: World, tmp_path: Path) -> None:
    """A real spool of the SDK before this one (batches as JSON, NaN spelt "NaN"): synced,
    every value as it was logged."""
    root = tmp_path / "spool"
    shutil.copytree(OLD_SPOOL, root)
    (run_dir,) = root.iterdir()
    assert [p.suffix for p in run_dir.glob("batch-*")] == [".json"]
    (result,) = await _sync(world, root)
    assert (result.done, result.points, result.dropped, result.error) == (True, 17, 0, None)
    assert not run_dir.exists()
    loss = _stored(world, run_dir.name, "loss")
    assert loss.steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 2**62]
    expected = [0.5, math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.1 + 0.2, 7.25]
    assert _bits(loss.values) == _bits(expected)
    assert loss.times.tolist()[0] == 1796434898.0320463  # as the old SDK wrote it
    acc = _stored(world, run_dir.name, "acc")
    assert acc.values.tolist() == [1.0 - i / 10 for i in range(8)]
