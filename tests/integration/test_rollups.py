"""Rollups (metrics/rollups.py): a downsampled read from rollups and raw edges equals a
brute-force reduction of every point over the same aligned grid, whatever the order,
repeats, NaN and infinities of the steps logged and wherever the roller stopped."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from safeboard.metrics import repository, rollups
from safeboard.metrics.codec import Buckets, Series
from safeboard.metrics.models import MetricRollupRow
from safeboard.projects.models import ProjectRow
from safeboard.runs.models import RunRow
from safeboard.storage import writer
from tests.support.schema import migrate

RUN = "r" * 32
_names = itertools.count()

values = st.floats(allow_nan=True, allow_infinity=True)
dense = st.integers(min_value=0, max_value=300)
sparse = st.integers(min_value=0, max_value=2**40)
points = st.lists(st.tuples(st.one_of(dense, dense, sparse), values), min_size=1, max_size=60)


@pytest.fixture
def db(engine: Engine) -> Engine:
    migrate(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(ProjectRow.__table__).values(id=1, name="p", created_at=now))
        conn.execute(
            sa.insert(RunRow.__table__).values(id=RUN, project_id=1, name="r", created_at=now)
        )
    return engine


def _log(engine: Engine, key: str, batch: list[tuple[int, float]]) -> None:
    steps = np.array([s for s, _ in batch], dtype=np.int64)
    series = Series(steps, np.zeros(steps.size), np.array([v for _, v in batch]))
    with writer(engine).begin() as conn:
        repository.add_chunk(conn, RUN, key, series)
        repository.update_summary(conn, RUN, key, series)


def _roll(
    engine: Engine,
    key: str,
    slices: int,
    slice_points: int,
    min_shift: int = 0,
    points_per_block: int = 1,
) -> None:
    """Up to ``slices`` roll steps; by default with blocks as fine as the test's points
    (the product's: 2**10 steps at least, about 16 points)."""
    for _ in range(slices):
        with writer(engine).begin() as conn:
            if not rollups.roll(
                conn,
                RUN,
                key,
                min_shift=min_shift,
                slice_points=slice_points,
                points_per_block=points_per_block,
            ):
                return


def _read(engine: Engine, key: str, buckets: int, start: int | None, end: int | None) -> Buckets:
    with engine.connect() as conn:
        state = rollups.states(conn, RUN, [key])[key]
        return rollups.downsampled(conn, state, RUN, buckets=buckets, start=start, end=end)


def _expected(
    logged: list[tuple[int, float]], buckets: int, start: int | None, end: int | None
) -> list[tuple[int, int, int, float, float, float]]:
    """Per non-empty bucket of the aligned grid: first, last step, count, min, max, last."""
    first, last = min(s for s, _ in logged), max(s for s, _ in logged)
    lo = first if start is None else max(start, first)
    hi = last if end is None else min(end, last)
    k = 0
    while (hi >> k) - (lo >> k) + 1 > buckets:
        k += 1
    grid: dict[int, list[tuple[int, float]]] = {}
    for step, value in sorted(logged, key=lambda p: p[0]):  # stable: logged order on ties
        if lo <= step <= hi:
            grid.setdefault(step >> k, []).append((step, value))
    out = []
    for _, cell in sorted(grid.items()):
        finite = [v for _, v in cell if not math.isnan(v)]
        out.append(
            (
                cell[0][0],
                cell[-1][0],
                len(cell),
                min(finite, default=math.nan),
                max(finite, default=math.nan),
                cell[-1][1],
            )
        )
    return out


def _rows(b: Buckets) -> list[tuple[int, int, int, float, float, float]]:
    return list(
        zip(
            b.first_step.tolist(),
            b.last_step.tolist(),
            b.count.tolist(),
            b.min.tolist(),
            b.max.tolist(),
            b.last.tolist(),
            strict=True,
        )
    )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.tuples(points, st.integers(0, 3), st.integers(1, 40)), min_size=1, max_size=8
    ),
    ordered=st.booleans(),
    buckets=st.integers(1, 30),
    start=st.none() | dense,
    end=st.none() | dense | sparse,
)
def test_a_rolled_read_equals_a_reduction_of_every_point(
    db: Engine,
    batches: list[tuple[list[tuple[int, float]], int, int]],
    ordered: bool,
    buckets: int,
    start: int | None,
    end: int | None,
) -> None:
    key = f"k{next(_names)}"
    logged: list[tuple[int, float]] = []
    offset = 0
    for drawn, slices, slice_points in batches:
        batch = drawn
        if ordered:  # as a training loop logs: each batch from the last one's step on
            batch = [(offset + s, v) for s, v in sorted(drawn, key=lambda p: p[0])]
            offset = batch[-1][0]
        _log(db, key, batch)
        logged += batch
        _roll(db, key, slices, slice_points)  # the roller's progress: none to all
        for lo, hi in ((None, None), (start, end)):
            got, want = _rows(_read(db, key, buckets, lo, hi)), _expected(logged, buckets, lo, hi)
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert g[:3] == w[:3]
                assert all(_same(a, b) for a, b in zip(g[3:], w[3:], strict=True)), (g, w)


def test_a_long_history_is_read_from_few_rollup_rows(db: Engine) -> None:
    key = "loss"
    steps = np.arange(1_000_000, dtype=np.int64)
    values = np.sin(steps / 1000.0)
    values[123_457] = 50.0  # a spike the buckets must keep
    for part in range(0, steps.size, 100_000):
        cut = slice(part, part + 100_000)
        series = Series(steps[cut], np.zeros(100_000), values[cut])
        with writer(db).begin() as conn:
            repository.add_chunk(conn, RUN, key, series)
            repository.update_summary(conn, RUN, key, series)
    _roll(db, key, 10, rollups.SLICE_POINTS, rollups.MIN_SHIFT, rollups.POINTS_PER_BLOCK)
    with db.connect() as conn:
        state = rollups.states(conn, RUN, [key])[key]
        table = MetricRollupRow.__table__
        stored = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    assert state.shift == rollups.MIN_SHIFT
    assert state.rolled_to == 999_936  # the last whole block of 256 steps
    # Levels 8, 9, ... 22: twice the finest level's rows, and a partial block per level.
    assert stored <= 2 * (1_000_000 // 256) + rollups.LEVELS
    b = _read(db, key, 1000, None, None)
    assert len(b.count) <= 1000
    assert int(b.count.sum()) == 1_000_000
    assert float(b.max.max()) == 50.0
    assert b.last[-1] == values[-1]


def test_a_run_deleted_takes_its_rollups(db: Engine) -> None:
    _log(db, "acc", [(s, 0.5) for s in range(5000)])
    _roll(db, "acc", 5, rollups.SLICE_POINTS)
    table = MetricRollupRow.__table__
    count = sa.select(sa.func.count()).select_from(table)
    with db.begin() as conn:
        assert conn.execute(count).scalar_one() > 0
        conn.execute(sa.delete(RunRow.__table__).where(RunRow.__table__.c.id == RUN))
        assert conn.execute(count).scalar_one() == 0


def test_a_gap_in_the_steps_is_crossed_in_one_roll_step(db: Engine) -> None:
    """A key whose steps start far from 0 (bench clients write from i * 10**12), or jump
    far: rolling goes from point to point, not through the empty steps slice by slice
    (two million transactions that held SQLite's write lock: ingest answered 500)."""
    far = 10**12
    _log(db, "far", [(far + s, float(s)) for s in range(3000)])
    _log(db, "far", [(far + 10**9 + s, float(s)) for s in range(3000)])  # then a jump
    _log(db, "far", [(far + 10**9 + 3000 + s, float(s)) for s in range(2_000_000)])
    for _ in range(20):
        with writer(db).begin() as conn:
            if not rollups.roll(conn, RUN, "far"):
                break
    else:
        pytest.fail("still rolling after 20 steps")
    got = _rows(_read(db, "far", 4, None, None))
    assert sum(g[2] for g in got) == 2_006_000
