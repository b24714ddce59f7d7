"""Renaming and deleting projects, deleting users (issue 18), on SQLite and PostgreSQL:
a rename keeps grants, bound keys and runs; names stay unique; a deleted project hides
with its runs and comes back whole; the sweep purges it past its period; a deleted user's
sessions and keys stop at once, their runs stay, the audit log keeps the name; the last
admin cannot be deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import anyio
import httpx
import pytest
import sqlalchemy as sa

from safeboard.audit import service as audit
from safeboard.auth.permissions import Role, Scope
from safeboard.clock import utcnow
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    for name in ("olga", "vic", "eve"):
        built.user(name)
    yield built
    await built.close()


def as_user(world: World, name: str, scope: Scope = Scope.ADMIN, **kw: object) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name, scope, **kw)}")


async def _project(world: World, name: str = "mnist") -> tuple[httpx.AsyncClient, str]:
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": name})).status_code == 201
    granted = await olga.put(f"/api/v1/projects/{name}/grants/vic", json={"role": "editor"})
    assert granted.status_code == 204
    run = await olga.post(f"/api/v1/projects/{name}/runs", json={"name": "r"})
    return olga, run.json()["id"]


def _project_id(world: World, name: str) -> int:
    with world.services.engine.connect() as conn:
        found = conn.execute(sa.text("SELECT id FROM projects WHERE name = :n"), {"n": name})
        return int(found.scalar_one())


async def test_rename_keeps_grants_keys_and_runs(world: World) -> None:
    olga, run_id = await _project(world)
    bound = as_user(world, "vic", project_id=_project_id(world, "mnist"))
    vic = as_user(world, "vic")
    assert (await olga.post("/api/v1/projects", json={"name": "taken"})).status_code == 201
    assert (await vic.patch("/api/v1/projects/mnist", json={"name": "x"})).status_code == 403
    clash = await olga.patch("/api/v1/projects/mnist", json={"name": "taken"})
    assert clash.status_code == 409
    bad = await olga.patch("/api/v1/projects/mnist", json={"name": "no/slash"})
    assert bad.status_code == 422
    renamed = await olga.patch("/api/v1/projects/mnist", json={"name": "mnist-v2"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "mnist-v2"
    moved = await olga.get("/api/v1/projects/mnist")  # the old name: test_project_renames.py
    assert (moved.status_code, moved.headers["location"]) == (308, "/api/v1/projects/mnist-v2")
    assert (await vic.get(f"/api/v1/runs/{run_id}")).json()["project"] == "mnist-v2"
    made = await bound.post("/api/v1/projects/mnist-v2/runs", json={"name": "by-key"})
    assert made.status_code == 201, made.text
    entries = [
        e for e in audit.list_entries(world.services.engine) if e.action == "project.renamed"
    ]
    assert [(e.detail["from"], e.detail["to"]) for e in entries] == [("mnist", "mnist-v2")]


async def test_a_deleted_project_hides_with_its_runs_and_comes_back(world: World) -> None:
    olga, run_id = await _project(world)
    lone = await olga.post("/api/v1/projects/mnist/runs", json={"name": "deleted-before"})
    lone_id = lone.json()["id"]
    assert (await olga.delete(f"/api/v1/runs/{lone_id}")).status_code == 200
    vic, eve = as_user(world, "vic"), as_user(world, "eve")
    assert (await vic.delete("/api/v1/projects/mnist")).status_code == 403  # an editor
    assert (await eve.delete("/api/v1/projects/mnist")).status_code == 404
    gone = await olga.delete("/api/v1/projects/mnist")
    assert gone.status_code == 200, gone.text
    assert gone.json()["runs"] == 1
    assert (await olga.get("/api/v1/projects/mnist")).status_code == 404
    assert [p["name"] for p in (await olga.get("/api/v1/projects")).json()] == []
    assert (await olga.get(f"/api/v1/runs/{run_id}")).status_code == 404
    assert (await vic.get("/api/v1/projects/mnist/runs")).status_code == 404
    # Its name stays taken: its owner and an admin hear where it is and how to free it;
    # its editor (who may not restore it) and a stranger, that the name is not available.
    in_trash = (
        "project 'mnist' is in the trash: restore it (`safeboard projects restore mnist`), "
        "or purge it for good (`safeboard projects purge mnist`) to use the name again"
    )
    for who, said in (("olga", in_trash), ("admin", in_trash), ("vic", None), ("eve", None)):
        again = await as_user(world, who).post("/api/v1/projects", json={"name": "mnist"})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["message"] == (said or "project name not available"), who
    assert [p["name"] for p in (await olga.get("/api/v1/trash/projects")).json()] == ["mnist"]
    assert (await vic.get("/api/v1/trash/projects")).json() == []
    assert (await vic.post("/api/v1/projects/mnist/restore")).status_code == 404

    back = await olga.post("/api/v1/projects/mnist/restore")
    assert back.status_code == 200, back.text
    assert back.json()["runs"] == 1
    assert (await vic.get(f"/api/v1/runs/{run_id}")).status_code == 200
    assert (await olga.get(f"/api/v1/runs/{lone_id}")).status_code == 404  # its own delete
    actions = [e.action for e in audit.list_entries(world.services.engine)]
    assert "project.deleted" in actions
    assert "project.restored" in actions


async def test_the_sweep_purges_a_deleted_project_whole(world: World) -> None:
    olga, run_id = await _project(world)
    batch = {"batch_id": "c" * 32, "metrics": {"loss": {"steps": [1], "times": [1.0],
                                                         "values": [0.5]}}}  # fmt: skip
    assert (await olga.post(f"/api/v1/runs/{run_id}/metrics", json=batch)).status_code == 200
    project_id = _project_id(world, "mnist")
    assert (await olga.delete("/api/v1/projects/mnist")).status_code == 200
    trash = world.services.trash
    assert trash.sweep() == 0
    later = utcnow() + timedelta(days=31)
    trash.clock = lambda: later
    assert trash.sweep() >= 1
    with world.services.engine.connect() as conn:
        for table, column in (("projects", "id"), ("runs", "project_id"),
                              ("project_grants", "project_id")):  # fmt: skip
            query = sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :p")  # noqa: S608
            assert conn.execute(query, {"p": project_id}).scalar_one() == 0, table
        chunks = sa.text("SELECT count(*) FROM metric_chunks WHERE run_id = :r")
        assert conn.execute(chunks, {"r": run_id}).scalar_one() == 0
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    assert "project.purged" in [e.action for e in audit.list_entries(world.services.engine)]


async def test_the_deleted_projects_page_and_purging_at_once(world: World) -> None:
    """``/trash`` lists the projects in the trash its reader may restore or purge, with
    both buttons; ``POST .../purge`` removes one for good (audited with who asked)."""
    olga, _ = await _project(world)
    project_id = _project_id(world, "mnist")
    # The previous name too: a purge takes it with the project.
    assert (await olga.patch("/api/v1/projects/mnist", json={"name": "digits"})).status_code == 200
    assert (await olga.delete("/api/v1/projects/digits")).status_code == 200
    vic, admin = as_user(world, "vic"), as_user(world, "admin")
    html = {"Accept": "text/html"}
    mine = await olga.get("/trash", headers=html)
    assert mine.status_code == 200
    assert 'data-project="digits"' in mine.text
    assert "Delete for good" in mine.text
    theirs = await vic.get("/trash", headers=html)  # an editor may not restore it
    assert theirs.status_code == 200
    assert 'data-project="digits"' not in theirs.text
    assert "deleted-yes" not in theirs.text
    assert 'data-project="digits"' in (await admin.get("/trash", headers=html)).text
    assert 'href="/trash"' in (await olga.get("/", headers=html)).text
    assert (await vic.post("/api/v1/projects/digits/purge")).status_code == 404
    assert (await olga.post("/api/v1/projects/mnist/purge")).status_code == 404  # not in trash
    gone = await olga.post("/api/v1/projects/digits/purge")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"project": "digits", "runs": 1}
    with world.services.engine.connect() as conn:
        for table, column in (("projects", "id"), ("runs", "project_id"),
                              ("project_renames", "project_id")):  # fmt: skip
            query = sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :p")  # noqa: S608
            assert conn.execute(query, {"p": project_id}).scalar_one() == 0, table
    assert (await olga.get("/api/v1/trash/projects")).json() == []
    purged = [e for e in audit.list_entries(world.services.engine) if e.action == "project.purged"]
    assert [e.actor.split(" ")[0] for e in purged] == ["user:olga"]
    assert (await olga.post("/api/v1/projects", json={"name": "digits"})).status_code == 201


async def test_a_project_restored_while_its_purge_runs_stays(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge goes run by run (minutes for a large project), and the project stays on the
    deleted projects page meanwhile: a co-owner may restore it. The purge used to carry on
    regardless, deleting the restored project's runs and then the live project itself."""
    olga, _ = await _project(world)
    await olga.post("/api/v1/projects/mnist/runs", json={"name": "r2"})
    assert (await olga.delete("/api/v1/projects/mnist")).status_code == 200
    trash = world.services.trash
    purge_one = trash._purge
    admin = as_user(world, "admin")

    purged: list[str] = []

    def then_restore(actor: str, project_id: int, run_id: str, stop: object = None) -> None:
        purge_one(actor, project_id, run_id, stop)  # type: ignore[arg-type]
        purged.append(run_id)
        if len(purged) == 1:  # the first run's purge ends: the co-owner's restore comes in
            back = anyio.from_thread.run(admin.post, "/api/v1/projects/mnist/restore")
            assert back.status_code == 200, back.text

    monkeypatch.setattr(trash, "_purge", then_restore)
    stopped = await olga.post("/api/v1/projects/mnist/purge")
    assert stopped.status_code == 409, stopped.text
    assert "restored while it was being purged" in stopped.json()["error"]["message"]
    assert (await olga.get("/api/v1/projects/mnist")).status_code == 200
    runs = (await olga.get("/api/v1/projects/mnist/runs")).json()["runs"]
    assert len(purged) == 1
    assert len(runs) == 1  # the one the purge had not reached
    assert runs[0]["id"] != purged[0]


async def test_deleting_a_user_revokes_at_once_and_keeps_their_runs(world: World) -> None:
    olga, _ = await _project(world)
    vic = as_user(world, "vic")
    vic_run = (await vic.post("/api/v1/projects/mnist/runs", json={"name": "vics"})).json()["id"]
    session, _ = await world.signed_in("vic")
    assert (await session.get("/api/v1/auth/session")).status_code == 200
    admin = as_user(world, "admin")
    assert (await olga.delete("/api/v1/users/vic")).status_code == 403  # a member
    assert (await admin.delete("/api/v1/users/nobody")).status_code == 404
    deleted = await admin.delete("/api/v1/users/vic")
    assert deleted.status_code == 204, deleted.text
    assert (await vic.get("/api/v1/projects")).status_code == 401
    assert (await session.get("/api/v1/auth/session")).status_code == 401
    assert (await olga.get(f"/api/v1/runs/{vic_run}")).status_code == 200
    assert "vic" not in [u["username"] for u in (await admin.get("/api/v1/users")).json()]
    entries = audit.list_entries(world.services.engine)
    assert ("user.deleted", "user:vic") in [(e.action, e.target) for e in entries]
    assert audit.verify(world.services.engine).ok


async def test_the_last_admin_cannot_be_deleted(world: World) -> None:
    admin = as_user(world, "admin")
    last = await admin.delete("/api/v1/users/admin")
    assert last.status_code == 409
    assert "last active admin" in last.json()["error"]["message"]
    assert (await admin.patch("/api/v1/users/olga", json={"role": "admin"})).status_code == 200
    assert (await admin.delete("/api/v1/users/admin")).status_code == 204
