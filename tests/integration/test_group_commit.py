"""Group commit of metric batches (issue 13, P9): concurrent batches share transactions,
each answered only after the commit that holds it, a failing batch fails alone, a duplicate
within one group is stored once, and a batch that cannot get into a group in time is a 503
(``busy``) with nothing stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.auth.permissions import Role, Scope
from safeboard.auth.principal import Principal
from safeboard.errors import NotFound, WriteQueueFull
from safeboard.events import Event
from safeboard.ids import new_id
from safeboard.metrics.codec import Series
from safeboard.metrics.repository import summaries
from safeboard.metrics.service import IngestResult, MetricService
from safeboard.metrics.writer import GroupWriter
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga", Role.MEMBER)
    yield built
    await built.close()


async def _runs(world: World, n: int) -> tuple[Principal, list[str]]:
    token = world.key("olga", Scope.WRITE)
    olga = world.client(Authorization=f"Bearer {token}")
    assert (await olga.post("/api/v1/projects", json={"name": "sweep"})).status_code == 201
    ids = []
    for _ in range(n):
        run = await olga.post("/api/v1/projects/sweep/runs", json={})
        assert run.status_code == 201, run.text
        ids.append(run.json()["id"])
    return world.context.keys.principal(token, "127.0.0.1"), ids


def _batch(step: int, keys: int = 10) -> dict[str, Series]:
    steps = np.array([step], dtype=np.int64)
    return {
        f"m{k}": Series(steps, np.array([1.7e9 + step]), np.array([float(k)])) for k in range(keys)
    }


def _stored(world: World, run_id: str) -> tuple[int, int]:
    """(points in chunks, batch ids claimed) for the run, read on a fresh connection."""
    with world.services.engine.connect() as conn:
        points = conn.execute(
            sa.text("SELECT COALESCE(SUM(count), 0) FROM metric_chunks WHERE run_id = :r"),
            {"r": run_id},
        ).scalar()
        batches = conn.execute(
            sa.text("SELECT COUNT(*) FROM ingest_batches WHERE run_id = :r"), {"r": run_id}
        ).scalar()
    return int(points or 0), int(batches or 0)


@contextmanager
def held(writer: GroupWriter) -> Iterator[Callable[[int], None]]:
    """A group under way that blocks until the block ends: batches sent meanwhile wait, then
    go together in the next group. Yields a wait for ``n`` batches to be waiting."""
    release = threading.Event()

    def block(_conn: Connection) -> None:
        release.wait(30)

    thread = threading.Thread(target=writer.run, args=(block,))
    thread.start()

    def until_waiting(n: int) -> None:
        deadline = time.monotonic() + 30
        while writer.waiting < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert writer.waiting == n

    try:
        yield until_waiting
    finally:
        release.set()
        thread.join(30)


async def test_concurrent_batches_share_commits_each_answered_after_its_own(
    world: World,
) -> None:
    principal, runs = await _runs(world, 8)
    metrics: MetricService = world.services.metrics
    commits_before = metrics.writer.commits
    per_run = 6
    late: list[str] = []

    def post(i: int) -> None:
        run_id, batch_id = runs[i % len(runs)], new_id()
        metrics.ingest(principal, run_id, batch_id, _batch(i))
        # Answered: the batch is committed, so any other connection sees it now.
        with world.services.engine.connect() as conn:
            seen = conn.execute(
                sa.text("SELECT COUNT(*) FROM ingest_batches WHERE batch_id = :b"),
                {"b": batch_id},
            ).scalar()
        if seen != 1:
            late.append(batch_id)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, range(len(runs) * per_run)))
    assert late == []
    for run_id in runs:
        assert _stored(world, run_id) == (per_run * 10, per_run)  # every point, once
    commits = metrics.writer.commits - commits_before
    assert commits < len(runs) * per_run  # grouped: fewer transactions than batches


async def test_a_failing_batch_fails_alone_and_a_duplicate_in_a_group_is_stored_once(
    world: World,
) -> None:
    principal, (run_a, run_b, doomed) = await _runs(world, 3)
    metrics: MetricService = world.services.metrics
    metrics.monotonic = lambda: 0.0  # the access checks below stay remembered
    for run_id in (run_a, run_b, doomed):
        metrics.ingest(principal, run_id, new_id(), _batch(0))
    with world.services.engine.begin() as conn:  # deleted after its access was checked
        conn.execute(sa.text("DELETE FROM runs WHERE id = :r"), {"r": doomed})
    twice = new_id()
    jobs = [(run_a, twice), (run_a, twice), (doomed, new_id()), (run_b, new_id())]
    commits_before = metrics.writer.commits
    with ThreadPoolExecutor(4) as pool:
        with held(metrics.writer) as until_waiting:
            futures = []
            for n, (run_id, batch_id) in enumerate(jobs, start=1):
                futures.append(pool.submit(metrics.ingest, principal, run_id, batch_id, _batch(1)))
                until_waiting(n)  # in this order, all in the next group
        outcomes = [f.exception() or f.result() for f in futures]
    assert metrics.writer.commits - commits_before == 2  # the held group, then all four
    first, again, refused, other = outcomes
    assert isinstance(first, IngestResult)
    assert (first.stored, first.duplicate) == (10, False)
    assert isinstance(again, IngestResult)
    assert (again.stored, again.duplicate) == (0, True)  # the same batch id, in one group
    assert isinstance(refused, NotFound)
    assert isinstance(other, IngestResult)
    assert not other.duplicate
    assert _stored(world, run_a) == (20, 2)
    assert _stored(world, run_b) == (20, 2)


async def test_a_batch_that_cannot_get_into_a_group_in_time_is_busy_and_not_stored(
    world: World,
) -> None:
    principal, (run_id,) = await _runs(world, 1)
    metrics: MetricService = world.services.metrics
    metrics.writer = GroupWriter(world.services.engine, wait=0.3)
    with held(metrics.writer):
        began = time.monotonic()
        with pytest.raises(WriteQueueFull) as refused:
            metrics.ingest(principal, run_id, new_id(), _batch(1))
        assert time.monotonic() - began < 10
    assert refused.value.code == "busy"
    assert refused.value.headers == {"Retry-After": "1"}
    assert _stored(world, run_id) == (0, 0)
    assert metrics.writer.waiting == 0
    metrics.ingest(principal, run_id, new_id(), _batch(2))  # the writer goes on
    assert _stored(world, run_id) == (10, 1)


async def test_a_group_costs_a_few_statements_whatever_its_size(world: World) -> None:
    """Every claim, chunk, summary and live event of a group in one statement each (a run
    with two batches in the group: its summaries in two), not four statements a batch."""
    principal, runs = await _runs(world, 8)
    metrics: MetricService = world.services.metrics
    metrics.monotonic = lambda: 0.0  # the access checks below stay remembered
    for run_id in runs:
        metrics.ingest(principal, run_id, new_id(), _batch(0))
    writes: list[str] = []
    tables = ("ingest_batches", "metric_chunks", "metric_summaries", "live_events")

    def count(_c: object, _cur: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT") and any(t in statement for t in tables):
            writes.append(statement)

    jobs = [(run_id, step) for step in (2, 1) for run_id in runs]  # 16 batches, 2 a run
    sa.event.listen(world.services.engine, "before_cursor_execute", count)
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            with held(metrics.writer) as until_waiting:
                futures = []
                for n, (run_id, step) in enumerate(jobs, start=1):
                    futures.append(
                        pool.submit(metrics.ingest, principal, run_id, new_id(), _batch(step))
                    )
                    until_waiting(n)
            outcomes = [f.result() for f in futures]
    finally:
        sa.event.remove(world.services.engine, "before_cursor_execute", count)
    assert all(not o.duplicate and o.stored == 10 for o in outcomes)
    assert len(writes) <= 5  # claims, chunks, summaries twice, events (was 64)
    for run_id in runs:
        assert _stored(world, run_id) == (30, 3)
        with world.services.engine.connect() as conn:
            found = {s.key: s for s in summaries(conn, run_id)}
        assert len(found) == 10
        assert all(s.count == 3 and s.last_step == 2 for s in found.values())


async def test_run_access_past_its_second_is_checked_again_for_the_whole_group_at_once(
    world: World,
) -> None:
    """Runs whose access was checked over ACCESS_FOR ago are re-checked in one query for
    the group (their grants, and whether the runs are out of the trash), not a walk of
    run, project and grant each; a grant removed meanwhile still refuses the run's next
    batch."""
    principal, runs = await _runs(world, 8)
    metrics: MetricService = world.services.metrics
    now = [0.0]
    metrics.monotonic = lambda: now[0]
    for run_id in runs:
        metrics.ingest(principal, run_id, new_id(), _batch(0))
    now[0] += 5.0  # every access remembered is past its second
    reads: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    sa.event.listen(world.services.engine, "before_cursor_execute", count)
    try:
        with ThreadPoolExecutor(len(runs)) as pool:
            with held(metrics.writer) as until_waiting:
                futures = []
                for n, run_id in enumerate(runs, start=1):
                    futures.append(
                        pool.submit(metrics.ingest, principal, run_id, new_id(), _batch(1))
                    )
                    until_waiting(n)
            outcomes = [f.result() for f in futures]
    finally:
        sa.event.remove(world.services.engine, "before_cursor_execute", count)
    assert all(not o.duplicate for o in outcomes)
    grant_reads = [s for s in reads if "project_grants" in s]
    assert len(grant_reads) == 1, reads  # was 8, with 16 more for the runs and projects
    # One more for the group: are the runs still out of the trash (issue 18).
    assert len([s for s in reads if "FROM runs" in s]) == 1, reads
    with world.services.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM project_grants"))
    now[0] += 5.0
    with pytest.raises(NotFound):
        metrics.ingest(principal, runs[0], new_id(), _batch(2))
    assert _stored(world, runs[0]) == (20, 2)


async def test_a_groups_live_events_go_out_in_id_order_before_any_answer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request publishing its own event after the commit made a stream see a higher
    id before a lower one (and one that ended between them skipped the lower one when it
    resumed after the higher: Last-Event-ID). The thread that wrote the group publishes
    them all, in id order, before any of its requests is answered. (On PostgreSQL the
    commit's NOTIFYs carry them, in id order: test_live_event_commits.py.)"""
    principal, runs = await _runs(world, 8)
    metrics: MetricService = world.services.metrics
    assert metrics.events is not None
    published: list[tuple[str, int]] = []
    real = metrics.events.publish

    def publish(event: Event) -> None:
        published.append((threading.current_thread().name, event.id))
        real(event)

    monkeypatch.setattr(metrics.events, "publish", publish)
    answered_after: list[int] = []

    def post(i: int) -> None:
        metrics.ingest(principal, runs[i], new_id(), _batch(1))
        answered_after.append(len(published))

    with ThreadPoolExecutor(8) as pool:
        with held(metrics.writer) as until_waiting:
            futures = [pool.submit(post, i) for i in range(8)]
            until_waiting(8)
        for future in futures:
            future.result()
    if world.services.engine.dialect.name == "postgresql":
        assert published == []  # they left with the commit (NOTIFY)
        return
    assert len(published) == 8
    assert len({name for name, _ in published}) == 1  # one thread: the group's writer
    ids = [event_id for _, event_id in published]
    assert ids == sorted(ids)
    assert len(set(ids)) == 8
    assert min(answered_after) == 8  # every answer came after all eight were published
