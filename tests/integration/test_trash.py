"""Deleting runs (issue 18): the trash hides a run everywhere, restore brings it back,
purge removes its rows and files in bounded transactions, bulk delete by filter, who may,
the audit trail, the retention sweep and a running task cancelled first; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from safeboard.audit import service as audit
from safeboard.auth.permissions import Role, Scope
from safeboard.clock import utcnow
from safeboard.jobs.queue import AgentEvent
from safeboard.metrics.service import ACCESS_FOR
from safeboard.settings import Settings
from safeboard.trash.service import SWEEP_LOCK
from tests.integration.identity_world import World, build_world
from tests.integration.sse import OpenStream
from tests.support.agents import add_agents

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url, retention={"purge_batch_rows": 7})
    built.user("admin", Role.ADMIN)
    for name in ("olga", "vic", "eve"):
        built.user(name)
    add_agents(built.services.engine, "agent-1")
    yield built
    await built.close()


def as_user(world: World, name: str, scope: Scope = Scope.ADMIN) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name, scope)}")


def batch(batch_id: str, key: str, steps: list[int]) -> dict[str, object]:
    series = {"steps": steps, "times": [1.7e9 + s for s in steps],
              "values": [float(s) for s in steps]}  # fmt: skip
    return {"batch_id": f"batch-{batch_id}", "metrics": {key: series}}


async def _project(world: World) -> httpx.AsyncClient:
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    viewer = await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    assert viewer.status_code == 204, viewer.text
    return olga


async def _run(client: httpx.AsyncClient, name: str, **body: Any) -> str:
    made = await client.post("/api/v1/projects/mnist/runs", json={"name": name, **body})
    assert made.status_code == 201, made.text
    run_id: str = made.json()["id"]
    return run_id


async def _artifact(client: httpx.AsyncClient, run_id: str, data: bytes) -> str:
    body = {"name": "model.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    made = await client.post(f"/api/v1/runs/{run_id}/artifacts", json=body)
    assert made.status_code == 201, made.text
    artifact_id: str = made.json()["id"]
    put = await client.put(f"/api/v1/artifacts/{artifact_id}/content", content=data,
                           headers={"Upload-Offset": "0",
                                    "Content-Type": "application/octet-stream"})  # fmt: skip
    assert put.status_code == 200, put.text
    return artifact_id


def _rows(world: World, table: str, run_id: str) -> int:
    with world.services.engine.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM {table} WHERE run_id = :r")  # noqa: S608
        return int(conn.execute(query, {"r": run_id}).scalar_one())


async def test_a_deleted_run_is_hidden_everywhere_until_restored(world: World) -> None:
    olga = await _project(world)
    run_id = await _run(olga, "doomed", tags={"kind": "x"})
    kept = await _run(olga, "kept")
    assert (await olga.post(f"/api/v1/runs/{run_id}/metrics",
                            json=batch("b1", "loss", [1, 2, 3]))).status_code == 200  # fmt: skip
    artifact_id = await _artifact(olga, run_id, b"weights")

    deleted = await olga.delete(f"/api/v1/runs/{run_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["run_ids"] == [run_id]

    listed = (await olga.get("/api/v1/projects/mnist/runs", params={"count": "true"})).json()
    assert [r["id"] for r in listed["runs"]] == [kept]
    assert listed["total"] == 1
    found = await olga.get("/api/v1/projects/mnist/runs", params={"filter": "tags.kind = x"})
    assert found.json()["runs"] == []
    assert (await olga.get("/api/v1/run-ids", params={"prefix": run_id[:6]})).json()["ids"] == []
    for path in (f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/artifacts",
                 f"/api/v1/artifacts/{artifact_id}/content", f"/api/v1/runs/{run_id}/events",
                 f"/api/v1/runs/{run_id}/points?metric=loss",
                 f"/api/v1/runs/{run_id}/history?metric=loss"):  # fmt: skip
        answer = await olga.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
    await asyncio.sleep(ACCESS_FOR + 0.2)  # past the ingest's trust in a recent check
    written = await olga.post(f"/api/v1/runs/{run_id}/metrics", json=batch("b2", "loss", [4]))
    assert written.status_code == 404
    projects = (await olga.get("/api/v1/projects")).json()
    assert [p["runs"] for p in projects if p["name"] == "mnist"] == [1]

    trash = (await olga.get("/api/v1/projects/mnist/trash")).json()
    assert [(r["id"], r["deleted_by"].split()[0]) for r in trash["runs"]] == [(run_id, "user:olga")]
    assert trash["trash_days"] == 30

    restored = await olga.post(f"/api/v1/runs/{run_id}/restore")
    assert restored.status_code == 200, restored.text
    got = (await olga.get(f"/api/v1/runs/{run_id}")).json()
    assert [m["count"] for m in got["metrics"]] == [3]
    content = await olga.get(f"/api/v1/artifacts/{artifact_id}/content")
    assert content.status_code == 200
    assert content.content == b"weights"
    assert (await olga.get("/api/v1/projects/mnist/trash")).json()["runs"] == []
    actions = [(e.action, e.target) for e in audit.list_entries(world.services.engine)]
    assert ("run.deleted", f"run:{run_id}") in actions
    assert ("run.restored", f"run:{run_id}") in actions


async def test_purge_removes_rows_and_files_in_batches(world: World) -> None:
    olga = await _project(world)
    run_id = await _run(olga, "big", tags={"a": "1"})
    for i in range(30):  # more chunks than a purge batch (7 rows)
        answer = await olga.post(f"/api/v1/runs/{run_id}/metrics",
                                 json=batch(f"b{i}", f"k{i % 3}", [i]))  # fmt: skip
        assert answer.status_code == 200
    artifact_id = await _artifact(olga, run_id, b"data" * 100)
    store = world.services.settings.artifact_dir
    assert any(store.rglob(f"*{artifact_id}*"))
    assert (await olga.post(f"/api/v1/runs/{run_id}/purge")).status_code == 404  # not in trash

    assert (
        await olga.delete(f"/api/v1/runs/{run_id}", params={"purge": "true"})
    ).status_code == 200
    for table in ("metric_chunks", "metric_summaries", "ingest_batches", "run_tags", "artifacts"):
        assert _rows(world, table, run_id) == 0, table
    with world.services.engine.connect() as conn:
        gone = conn.execute(sa.text("SELECT count(*) FROM runs WHERE id = :r"), {"r": run_id})
        assert gone.scalar_one() == 0
    assert not any(store.rglob(f"*{artifact_id}*"))
    assert (await olga.post(f"/api/v1/runs/{run_id}/restore")).status_code == 404
    purged = [e for e in audit.list_entries(world.services.engine) if e.action == "run.purged"]
    assert [e.target for e in purged] == [f"run:{run_id}"]
    assert audit.verify(world.services.engine).ok


async def test_who_may_delete_restore_and_purge(world: World) -> None:
    olga = await _project(world)
    run_id = await _run(olga, "r")
    vic, eve = as_user(world, "vic"), as_user(world, "eve")
    assert (await eve.post("/api/v1/projects", json={"name": "eves"})).status_code == 201
    assert (await vic.delete(f"/api/v1/runs/{run_id}")).status_code == 403  # a viewer
    assert (await eve.delete(f"/api/v1/runs/{run_id}")).status_code == 404  # another owner
    read_only = as_user(world, "olga", Scope.READ)
    assert (await read_only.delete(f"/api/v1/runs/{run_id}")).status_code == 403
    bulk = {"filter": None}
    assert (await vic.post("/api/v1/projects/mnist/runs/delete", json=bulk)).status_code == 403
    assert (await eve.post("/api/v1/projects/mnist/runs/delete", json=bulk)).status_code == 404
    assert (await olga.delete(f"/api/v1/runs/{run_id}")).status_code == 200
    assert (await vic.post(f"/api/v1/runs/{run_id}/restore")).status_code == 403
    assert (await eve.post(f"/api/v1/runs/{run_id}/restore")).status_code == 404
    assert (await eve.post(f"/api/v1/runs/{run_id}/purge")).status_code == 404
    assert (await eve.get("/api/v1/projects/mnist/trash")).status_code == 404
    assert (await vic.get("/api/v1/projects/mnist/trash")).status_code == 200
    retention = {"trash_days": 1}
    assert (await vic.put("/api/v1/projects/mnist/retention", json=retention)).status_code == 403
    admin = as_user(world, "admin")
    assert (await admin.post(f"/api/v1/runs/{run_id}/restore")).status_code == 200


async def test_bulk_delete_by_filter_counts_first(world: World) -> None:
    olga = await _project(world)
    small = [await _run(olga, f"s{i}", config={"lr": 0.001}) for i in range(3)]
    large = await _run(olga, "l", config={"lr": 0.5})
    body = {"filter": "params.lr < 0.01", "dry_run": True}
    counted = (await olga.post("/api/v1/projects/mnist/runs/delete", json=body)).json()
    assert counted["count"] == 3
    assert counted["dry_run"] is True
    assert len((await olga.get("/api/v1/projects/mnist/runs")).json()["runs"]) == 4
    body["dry_run"] = False
    done = (await olga.post("/api/v1/projects/mnist/runs/delete", json=body)).json()
    assert sorted(done["run_ids"]) == sorted(small)
    listed = (await olga.get("/api/v1/projects/mnist/runs")).json()["runs"]
    assert [r["id"] for r in listed] == [large]
    bad = await olga.post("/api/v1/projects/mnist/runs/delete", json={"filter": "params.lr <"})
    assert bad.status_code == 400
    both = {"filter": "status = running", "ids": [large]}
    assert (await olga.post("/api/v1/projects/mnist/runs/delete", json=both)).status_code == 422
    selected = await olga.post("/api/v1/projects/mnist/runs/delete", json={"ids": [large]})
    assert selected.json()["run_ids"] == [large]
    assert (await olga.get("/api/v1/projects/mnist/runs")).json()["runs"] == []


async def test_deleting_the_run_of_a_running_task_cancels_it_first(world: World) -> None:
    olga = await _project(world)
    made = await olga.post("/api/v1/projects/mnist/tasks", json={"command": ["python", "t.py"]})
    assert made.status_code == 201, made.text
    task = made.json()
    queue = world.services.queue
    assert queue.lease("agent-1", [], []) is not None
    queue.report(task["id"], 1, "agent-1", AgentEvent("running", pid=7))
    deleted = await olga.delete(f"/api/v1/runs/{task['run_id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["cancelled_tasks"] == [task["id"]]
    assert queue.heartbeat(task["id"], 1, "agent-1").cancel  # the agent is told to stop
    shown = (await olga.get(f"/api/v1/tasks/{task['id']}")).json()
    assert shown["state"] == "cancelling"
    queue.report(task["id"], 1, "agent-1", AgentEvent("exited", signal=15))
    assert (await olga.get(f"/api/v1/tasks/{task['id']}")).json()["state"] == "cancelled"
    assert (await olga.post(f"/api/v1/runs/{task['run_id']}/restore")).status_code == 200
    assert (await olga.get(f"/api/v1/runs/{task['run_id']}")).json()["status"] == "killed"


async def test_the_sweep_applies_each_projects_retention(world: World) -> None:
    olga = await _project(world)
    old = await _run(olga, "old")
    young = await _run(olga, "young")
    trashed = await _run(olga, "trashed")
    assert (await olga.delete(f"/api/v1/runs/{trashed}")).status_code == 200
    bad = await olga.put("/api/v1/projects/mnist/retention", json={"trash_days": -1})
    assert bad.status_code == 422
    put = await olga.put("/api/v1/projects/mnist/retention",
                         json={"trash_days": 2, "max_run_age_days": 10})  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json()["effective_trash_days"] == 2
    with world.services.engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET created_at = :t WHERE id = :r"),
                     {"t": utcnow() - timedelta(days=11), "r": old})  # fmt: skip
    trash = world.services.trash
    assert trash.sweep() == 0  # the trashed run is younger than 2 days
    assert [r["id"] for r in (await olga.get("/api/v1/projects/mnist/runs")).json()["runs"]] == [
        young
    ]
    later = utcnow() + timedelta(days=3)
    trash.clock = lambda: later
    assert trash.sweep() == 2  # both in the trash for more than 2 days by then
    with world.services.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT id FROM runs")).scalars().all()
    assert left == [young]
    entries = audit.list_entries(world.services.engine)
    assert ("run.deleted", f"run:{old}", "system:retention") in [
        (e.action, e.target, e.actor) for e in entries
    ]
    assert "project.retention_changed" in [e.action for e in entries]


async def test_purge_under_concurrent_ingest_loses_nothing(world: World) -> None:
    olga = await _project(world)
    big = await _run(olga, "big")
    for i in range(60):
        await olga.post(f"/api/v1/runs/{big}/metrics", json=batch(f"b{i}", f"k{i % 5}", [i]))
    writer_run = await _run(olga, "writer")
    assert (await olga.delete(f"/api/v1/runs/{big}")).status_code == 200

    async def ingest() -> list[int]:
        statuses = []
        for i in range(40):
            answer = await olga.post(f"/api/v1/runs/{writer_run}/metrics",
                                     json=batch(f"w{i}", "loss", [i]))  # fmt: skip
            statuses.append(answer.status_code)
            await asyncio.sleep(0)
        return statuses

    statuses, purged = await asyncio.gather(ingest(), olga.post(f"/api/v1/runs/{big}/purge"))
    assert purged.status_code == 200, purged.text
    assert set(statuses) == {200}
    got = (await olga.get(f"/api/v1/runs/{writer_run}")).json()
    assert [m["count"] for m in got["metrics"]] == [40]
    assert _rows(world, "metric_chunks", big) == 0


async def test_the_pages_offer_deleting_to_those_who_may(world: World) -> None:
    olga = await _project(world)
    run_id = await _run(olga, "r")
    vic, eve = as_user(world, "vic"), as_user(world, "eve")
    html = {"Accept": "text/html"}
    assert 'id="delete-run"' in (await olga.get(f"/runs/{run_id}", headers=html)).text
    assert 'id="delete-run"' not in (await vic.get(f"/runs/{run_id}", headers=html)).text
    assert 'id="delete-selected"' in (await olga.get("/projects/mnist", headers=html)).text
    assert 'id="delete-selected"' not in (await vic.get("/projects/mnist", headers=html)).text
    assert (await olga.delete(f"/api/v1/runs/{run_id}")).status_code == 200
    owner_view = (await olga.get("/projects/mnist/trash", headers=html)).text
    assert "Restore" in owner_view
    assert 'id="rename-form"' in owner_view
    viewer_view = await vic.get("/projects/mnist/trash", headers=html)
    assert viewer_view.status_code == 200
    assert "Restore" not in viewer_view.text
    assert 'id="rename-form"' not in viewer_view.text
    assert (await eve.get("/projects/mnist/trash", headers=html)).status_code == 404
    assert (await olga.get(f"/runs/{run_id}", headers=html)).status_code == 404
    compared = await olga.get(f"/compare?run={run_id}", headers=html)
    assert compared.status_code == 404


async def test_a_deleted_runs_open_stream_ends(world: World) -> None:
    world.services.events.start()  # as the app's start does (PostgreSQL: LISTEN)
    try:
        await _stream_ends(world)
    finally:
        world.services.events.stop()


async def _stream_ends(world: World) -> None:
    olga = await _project(world)
    run_id = await _run(olga, "watched")
    other = await _run(olga, "other")
    headers = {"Authorization": olga.headers["Authorization"]}
    watched = await OpenStream(world.app, world.base_url, f"/api/v1/runs/{run_id}/events",
                               headers).open()  # fmt: skip
    project = await OpenStream(world.app, world.base_url, "/api/v1/projects/mnist/events",
                               headers).open()  # fmt: skip
    assert watched.status == 200
    assert (await olga.delete(f"/api/v1/runs/{run_id}")).status_code == 200
    assert await watched.ended_within(5.0)
    kind, data = watched.events()[-1]
    assert (kind, data["error"]["code"]) == ("end", "not_found")
    assert await project.wait(lambda: '"deleted"' in project.body, 5.0)
    assert project.ended_at is None  # the project's stream goes on, for the other runs
    assert (await olga.post(f"/api/v1/runs/{other}/metrics",
                            json=batch("o1", "loss", [1]))).status_code == 200  # fmt: skip
    assert await project.wait(lambda: other in project.body, 5.0)
    await watched.close()
    await project.close()


@pytest.fixture
async def pg_world(make_settings: Callable[..., Settings], pg_url: str) -> AsyncIterator[World]:
    """The world on PostgreSQL only: replicas share a database there (SQLite: one server
    per data directory)."""
    built = build_world(make_settings, pg_url, retention={"purge_batch_rows": 7})
    for name in ("olga", "vic"):
        built.user(name)
    yield built
    await built.close()


@pytest.mark.postgres
async def test_on_postgresql_one_replica_sweeps_at_a_time(pg_world: World) -> None:
    world = pg_world
    engine = world.services.engine
    olga = await _project(world)
    run_id = await _run(olga, "old")
    assert (await olga.delete(f"/api/v1/runs/{run_id}")).status_code == 200
    trash = world.services.trash
    later = utcnow() + timedelta(days=31)
    trash.clock = lambda: later
    with engine.connect() as other:  # another replica's sweep holds the lock
        other.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": SWEEP_LOCK})
        assert trash.sweep() == 0
        with engine.connect() as conn:
            still = conn.execute(sa.text("SELECT count(*) FROM runs WHERE id = :r"), {"r": run_id})
            assert still.scalar_one() == 1
        other.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK})
    assert trash.sweep() == 1
