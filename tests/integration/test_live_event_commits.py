"""A live event exists exactly when the change it announces committed, and event ids become
visible in id order, so a stream's position (the last id it sent) never passes an event
still to come (safeboard.events, runs/service.py). Real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from safeboard.auth.principal import Principal
from safeboard.cli.local import Local
from safeboard.events import CHANNEL, Event
from safeboard.services import Services
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world


class Injected(Exception):
    """The failure a test injects between a transaction's event insert and its commit."""


@pytest.fixture
def world(make_settings: Callable[..., Settings], db_url: str) -> Iterator[World]:
    world = build_world(make_settings, db_url)
    world.user("olga")
    yield world
    world.services.streams.stop()  # as World.close, with no clients to close
    world.services.metrics.rollups.stop()
    world.services.engine.dispose()


def _owner(world: World) -> tuple[Services, Principal]:
    services = world.services
    principal = Local(services).principal("olga")
    services.projects.create(principal, "mnist")
    return services, principal


def _events(engine: Engine, run_id: str) -> list[tuple[str, str]]:
    query = sa.text("SELECT kind, data FROM live_events WHERE run_id = :run ORDER BY id")
    with engine.connect() as conn:
        return [(r.kind, r.data) for r in conn.execute(query, {"run": run_id})]


def _runs(engine: Engine, run_id: str) -> list[str]:
    with engine.connect() as conn:
        query = sa.text("SELECT status FROM runs WHERE id = :run")
        return list(conn.execute(query, {"run": run_id}).scalars())


def _fail_after_event_insert(engine: Engine) -> Callable[..., None]:
    """A hook that raises right after a live_events row is inserted, before the commit."""

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO LIVE_EVENTS" in statement.upper():
            raise Injected

    sa.event.listen(engine, "after_cursor_execute", hook)
    return hook


def test_a_run_and_its_created_event_commit_together(world: World) -> None:
    services, olga = _owner(world)
    engine = services.engine
    hook = _fail_after_event_insert(engine)
    try:
        with pytest.raises(Injected):
            services.runs.create(olga, "mnist", run_id="a" * 32)
    finally:
        sa.event.remove(engine, "after_cursor_execute", hook)
    assert _runs(engine, "a" * 32) == []  # neither the run ...
    assert _events(engine, "a" * 32) == []  # ... nor its event
    services.runs.create(olga, "mnist", run_id="a" * 32)
    assert _runs(engine, "a" * 32) == ["running"]
    assert _events(engine, "a" * 32) == [("run", '{"status":"running"}')]


def test_a_finished_run_and_its_event_commit_together(world: World) -> None:
    services, olga = _owner(world)
    engine = services.engine
    run = services.runs.create(olga, "mnist")
    hook = _fail_after_event_insert(engine)
    try:
        with pytest.raises(Injected):
            services.runs.update(olga, run.id, status="finished")
    finally:
        sa.event.remove(engine, "after_cursor_execute", hook)
    assert _runs(engine, run.id) == ["running"]
    assert _events(engine, run.id) == [("run", '{"status":"running"}')]
    services.runs.update(olga, run.id, status="finished")
    assert _runs(engine, run.id) == ["finished"]
    assert _events(engine, run.id) == [
        ("run", '{"status":"running"}'),
        ("run", '{"status":"finished"}'),
    ]


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return bool(conn.execute(query).scalar())


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_stream_never_passes_an_id_still_to_commit(world: World) -> None:
    """Transaction A draws an event id and has not committed; B draws the next one. A
    reader in between must not be handed B's event (its position would pass A's, which it
    would then never send); after both commits it gets both, once each, in id order."""
    services, olga = _owner(world)
    engine, bus = services.engine, services.events
    run = services.runs.create(olga, "mnist")  # its event: the reader's position
    start = bus.replay(0, run.project_id, None).newest
    done = threading.Event()
    b_event = Event("metrics", run.project_id, run.id, {"last_step": {"loss": 2}})

    def write_b() -> None:
        with engine.begin() as conn:
            bus.publish_at_commit(conn, b_event)
        done.set()

    with engine.connect() as a_conn, a_conn.begin() as a_tx:
        a_event = Event("metrics", run.project_id, run.id, {"last_step": {"loss": 1}})
        bus.publish_at_commit(a_conn, a_event)
        writer_b = threading.Thread(target=write_b)
        writer_b.start()
        deadline = time.monotonic() + 20
        while not done.is_set() and not _waiting_on_a_lock(engine):
            assert time.monotonic() < deadline, "B neither committed nor waited"
            time.sleep(0.02)
        between = bus.replay(start, run.project_id, None)
        assert [e.id for e in between.events] == []
        a_tx.commit()
    writer_b.join(20)
    assert done.is_set()
    after = bus.replay(start, run.project_id, None)
    assert [e.id for e in after.events] == [a_event.id, b_event.id]
    assert a_event.id < b_event.id
    assert [e.data for e in after.events] == [a_event.data, b_event.data]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_groups_notifications_leave_in_id_order(world: World) -> None:
    """A group's events go out in one NOTIFY statement, each once, in id order."""
    services, olga = _owner(world)
    engine, bus = services.engine, services.events
    run = services.runs.create(olga, "mnist")
    raw = engine.raw_connection()
    try:
        listener = raw.driver_connection
        assert listener is not None
        listener.autocommit = True
        listener.execute(f"LISTEN {CHANNEL}")
        group = [Event("metrics", run.project_id, run.id, {"last_step": {"loss": step}})
                 for step in range(50)]  # fmt: skip
        with engine.begin() as conn:
            assert bus.publish_all_at_commit(conn, group)
        heard: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(heard) < len(group) and time.monotonic() < deadline:
            heard += [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    finally:
        raw.invalidate()
    ids = [note["id"] for note in heard]
    assert ids == [event.id for event in group]
    assert ids == sorted(ids)
    # Each notification is its row: the same id with the same data (replayed from the table).
    stored = bus.replay(ids[0] - 1, run.project_id, run.id).events
    assert [(note["id"], note["data"]) for note in heard] == [(e.id, e.data) for e in stored]
    assert [note["data"] for note in heard] == [event.data for event in group]
