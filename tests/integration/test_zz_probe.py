from __future__ import annotations
import pytest, sqlalchemy as sa
from tests.integration.test_project_renames import world, as_user, _renamed, HTML  # noqa
from tests.integration.identity_world import World

pytestmark = pytest.mark.anyio

async def test_probe(world: World) -> None:
    olga, run_id = await _renamed(world, "mnist", "mnist-v2")
    vic = as_user(world, "vic")
    for path in ["/projects/mn%69st", "/projects/mnist?x=%0d%0aSet-Cookie:%20a=b", "/projects/mnist/trash?next=//evil.com",
                 "/projects/mnist%2Ftrash", "/projects/mnist/", "/projects/mnist/tasks/", "/projects/mnist;x",
                 "/api/v1/projects/mnist/events", "/api/v1/projects/mnist/runs?project=mnist",
                 "/api/v1/projects/mnist/trash", "/projects//mnist", "/api/v1/projects/mnist/grants"]:
        got = await vic.get(path, headers=HTML)
        print(path, got.status_code, got.headers.get("location"))
        got = await vic.get(path)
        print("  json", got.status_code, got.headers.get("location"))
    for m in ("HEAD", "OPTIONS"):
        got = await vic.request(m, "/api/v1/projects/mnist")
        print(m, got.status_code, got.headers.get("location"))
    got = await olga.post("/api/v1/projects/mnist/purge")
    print("purge old", got.status_code, got.text[:200])
    got = await olga.post("/api/v1/projects/mnist/restore")
    print("restore old", got.status_code, got.text[:200])
    # olga's key bound to another project of hers
    assert (await olga.post("/api/v1/projects", json={"name": "other"})).status_code == 201
    with world.services.engine.connect() as conn:
        other = conn.execute(sa.text("SELECT id FROM projects WHERE name = 'other'")).scalar_one()
    bound = as_user(world, "olga", project_id=int(other))
    for p in ("/api/v1/projects/mnist", "/api/v1/projects/mnist-v2", "/api/v1/projects/never"):
        got = await bound.get(p)
        print("bound", p, got.status_code, got.text[:150])
    # purge by vic (viewer) and by a non-owner editor after trash
    assert (await olga.delete("/api/v1/projects/mnist-v2")).status_code == 200
    for who in ("vic", "eve"):
        got = await as_user(world, who).post("/api/v1/projects/mnist-v2/purge")
        print("purge", who, got.status_code, got.text[:150])
    got = await bound.post("/api/v1/projects/mnist-v2/purge")
    print("purge bound", got.status_code, got.text[:150])
    from safeboard.auth.permissions import Scope
    ro = as_user(world, "olga", Scope.READ)
    got = await ro.post("/api/v1/projects/mnist-v2/purge")
    print("purge read-scope", got.status_code, got.text[:150])
    got = await as_user(world, "vic").get("/trash", headers=HTML)
    print("trash page vic", got.status_code, "mnist-v2" in got.text)
