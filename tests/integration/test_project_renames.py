"""A renamed project's old links (issue 18), on SQLite and PostgreSQL: pages and API
routes keyed by the old name answer 308 to the same route under the current name (path
tail and query kept, chains resolved); never to who may not read it (404 as for any
name); a project that takes the old name owns it; the SDK logs into the renamed project
instead of making a new one under the old name."""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa

import safeboard
from safeboard.auth.permissions import Role, Scope
from safeboard.sdk.sync import sync_all
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html"}


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


async def _renamed(world: World, *names: str) -> tuple[httpx.AsyncClient, str]:
    """olga's project ``names[0]`` (vic: viewer) with a run, renamed to each next name."""
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": names[0]})).status_code == 201
    granted = await olga.put(f"/api/v1/projects/{names[0]}/grants/vic", json={"role": "viewer"})
    assert granted.status_code == 204
    run = await olga.post(f"/api/v1/projects/{names[0]}/runs", json={"name": "r"})
    for old, new in itertools.pairwise(names):
        moved = await olga.patch(f"/api/v1/projects/{old}", json={"name": new})
        assert moved.status_code == 200, moved.text
    return olga, run.json()["id"]


async def test_old_links_redirect_to_the_current_name(world: World) -> None:
    olga, _ = await _renamed(world, "mnist", "mnist-v2", "mnist-v3")
    vic = as_user(world, "vic")
    for old in ("mnist", "mnist-v2"):  # a chain ends at the current name
        for tail in ("", "/trash", "/tasks", "?filter=metrics.loss%20%3C%201&order=asc"):
            got = await vic.get(f"/projects/{old}{tail}", headers=HTML)
            assert got.status_code == 308, (old, tail, got.text)
            assert got.headers["location"] == f"/projects/mnist-v3{tail}"
            assert (await vic.get(got.headers["location"], headers=HTML)).status_code == 200
    head = await vic.head("/projects/mnist/trash", headers=HTML)
    assert (head.status_code, head.headers["location"]) == (308, "/projects/mnist-v3/trash")
    api = await vic.get("/api/v1/projects/mnist/runs?limit=5")
    assert api.status_code == 308
    assert api.headers["location"] == "/api/v1/projects/mnist-v3/runs?limit=5"
    assert api.json()["error"]["code"] == "project_moved"
    assert (await vic.get(api.headers["location"])).status_code == 200
    # A write under the old name is sent on too (308 keeps the method and body).
    made = await olga.post("/api/v1/projects/mnist/runs", json={"name": "late"})
    assert made.status_code == 308
    assert made.headers["location"] == "/api/v1/projects/mnist-v3/runs"
    # The current name answers as ever; a name no project ever had, 404.
    assert (await vic.get("/projects/mnist-v3", headers=HTML)).status_code == 200
    assert (await vic.get("/projects/never", headers=HTML)).status_code == 404


async def test_a_redirect_reveals_nothing_to_who_may_not_read(world: World) -> None:
    await _renamed(world, "mnist", "secret-name")
    eve = as_user(world, "eve")
    nothing = await eve.get("/api/v1/projects/never")
    for path in ("/api/v1/projects/mnist", "/api/v1/projects/mnist/runs"):
        got = await eve.get(path)
        assert got.status_code == 404
        assert got.json()["error"]["message"] == nothing.json()["error"]["message"]
        assert "secret-name" not in got.text
        assert "location" not in got.headers
    page = await eve.get("/projects/mnist/trash", headers=HTML)
    assert page.status_code == 404
    assert "secret-name" not in page.text
    # A key bound to another project: as for any name.
    assert (await eve.post("/api/v1/projects", json={"name": "eves"})).status_code == 201
    with world.services.engine.connect() as conn:
        eves = conn.execute(sa.text("SELECT id FROM projects WHERE name = 'eves'")).scalar_one()
    olga_bound = as_user(world, "eve", project_id=int(eves))
    assert (await olga_bound.get("/api/v1/projects/mnist")).status_code == 404


async def test_a_project_that_takes_the_old_name_owns_it(world: World) -> None:
    olga, _ = await _renamed(world, "mnist", "mnist-v2")
    eve = as_user(world, "eve")
    assert (await eve.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    assert (await olga.get("/projects/mnist", headers=HTML)).status_code == 404
    assert (await eve.get("/projects/mnist", headers=HTML)).status_code == 200
    # Eve's project gives the name up in turn: it redirects to hers, not to olga's.
    assert (await eve.patch("/api/v1/projects/mnist", json={"name": "eve-2"})).status_code == 200
    assert (await eve.get("/api/v1/projects/mnist")).headers["location"] == "/api/v1/projects/eve-2"
    assert (await olga.get("/api/v1/projects/mnist")).status_code == 404
    # Renamed back: the current name again, and its other old name still leads to it.
    assert (await olga.patch("/api/v1/projects/mnist-v2", json={"name": "x"})).status_code == 200
    assert (await olga.patch("/api/v1/projects/x", json={"name": "mnist-v2"})).status_code == 200
    assert (await olga.get("/api/v1/projects/mnist-v2")).status_code == 200
    assert (await olga.get("/api/v1/projects/x")).headers["location"] == "/api/v1/projects/mnist-v2"
    # A project in the trash is not redirected to.
    assert (await olga.delete("/api/v1/projects/mnist-v2")).status_code == 200
    assert (await olga.get("/api/v1/projects/x")).status_code == 404


async def test_a_rename_over_a_rename_committed_meanwhile_is_refused(world: World) -> None:
    """Two renames of one project at once: on PostgreSQL the second waits on the first's
    row lock, then used to rename the project from the name it had read, so the first's new
    name was lost from the old names (its links 404) and the audit said ``from`` a name the
    project no longer had. The second now answers 409 and changes nothing."""
    from safeboard.clock import utcnow
    from safeboard.errors import Conflict
    from safeboard.projects import lifecycle

    olga, _ = await _renamed(world, "mnist", "mnist-v2")
    with world.services.engine.connect() as conn:
        project_id = conn.execute(
            sa.text("SELECT id FROM projects WHERE name = 'mnist-v2'")
        ).scalar_one()
    # What the second request does after the wait: it had read the project as 'mnist'.
    with pytest.raises(Conflict), world.services.engine.begin() as conn:
        lifecycle.rename(conn, int(project_id), "mnist", "mnist-v3", utcnow())
    assert (await olga.get("/api/v1/projects/mnist-v2")).status_code == 200
    moved = await olga.get("/api/v1/projects/mnist")
    assert moved.headers["location"] == "/api/v1/projects/mnist-v2"


async def test_the_sdk_logs_into_the_renamed_project(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """``safeboard.init(project=old)`` must not make a new, empty project under the old
    name: the run goes to the renamed project, and the SDK says so."""
    olga, _ = await _renamed(world, "mnist", "mnist-v2")
    root = Path(tempfile.mkdtemp(dir=world.settings.data_dir))
    try:
        run = safeboard.init("mnist", mode="offline", spool_dir=root, quiet=True)
        run.log({"loss": 0.5}, step=1)
        run.finish()
        key = world.key("olga", Scope.WRITE)
        transport = _AppTransport(world.app)
        with caplog.at_level(logging.WARNING, logger="safeboard.sdk"):
            await anyio.to_thread.run_sync(
                lambda: sync_all(root, url=world.base_url, api_key=key, transport=transport)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    got = await olga.get(f"/api/v1/runs/{run.id}")
    assert got.status_code == 200, got.text
    assert got.json()["project"] == "mnist-v2"
    listed = {p["name"] for p in (await olga.get("/api/v1/projects")).json()}
    assert "mnist" not in listed
    assert "renamed to 'mnist-v2'" in caplog.text
