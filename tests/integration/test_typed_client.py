"""``safeboard.client.Client`` against the in-process app (issue 11): typed objects back,
every path quoted once (metric keys with / % ? # round-trip), errors as classes from the
server's codes (a checksum mismatch is ``ChecksumMismatch``), id prefixes resolved by the
server among the runs the caller can see."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from safeboard.auth.permissions import Role, Scope
from safeboard.client import NO_RETRY, Client, Project, Run
from safeboard.client.http import ApiClient
from safeboard.errors import BadRequest, ChecksumMismatch, InvalidRequest, NotFound
from safeboard.settings import Settings
from safeboard.vocabulary import KeyScope, ProjectRole, RunStatus
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport

pytestmark = pytest.mark.anyio

ODD_KEYS = ["train/loss", "100%", "what?", "#1", "a b/c%2Fd?e=f#g", "ünï/ç"]


@pytest.fixture
async def world(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[World]:
    built = build_world(make_settings, f"sqlite:///{tmp_path / 'sb.db'}")
    built.user("olga", Role.MEMBER)
    built.user("pete", Role.MEMBER)
    built.user("root", Role.ADMIN)
    yield built
    await built.close()


def client_for(world: World, name: str, scope: Scope = Scope.ADMIN) -> Client:
    api = ApiClient(world.base_url, world.key(name, scope), transport=_AppTransport(world.app))
    return Client(api, retry=NO_RETRY)


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


async def test_projects_runs_and_metrics_come_back_typed(world: World) -> None:
    olga = client_for(world, "olga")

    def go() -> tuple[Project, Run, Run, dict[str, Any]]:
        project = olga.create_project("mnist", "digits")
        run_id = "ab" * 16
        first = olga.create_run("mnist", run_id=run_id, name="base", config={"lr": 0.1})
        again = olga.create_run("mnist", run_id=run_id, name="base", config={"lr": 0.1})
        assert again.id == first.id
        batch = {"batch_id": "b" * 32,
                 "metrics": {k: {"steps": [0, 1], "times": [1.0, 2.0], "values": [i, 2.0]}
                             for i, k in enumerate(ODD_KEYS)}}  # fmt: skip
        olga.post_metrics(run_id, batch)
        points = {k: olga.points(run_id, k) for k in ODD_KEYS}
        finished = olga.finish_run(run_id)
        return project, olga.run(run_id), finished, points

    project, run, finished, points = await in_thread(go)
    assert (project.name, project.role) == ("mnist", ProjectRole.OWNER)
    assert run.status is RunStatus.FINISHED
    assert finished.status is RunStatus.FINISHED
    assert sorted(m.key for m in run.metrics) == sorted(ODD_KEYS)
    for i, key in enumerate(ODD_KEYS):
        assert points[key].key == key
        assert (points[key].steps, points[key].values) == ((0, 1), (i, 2.0))
    olga.close()


async def test_a_bad_filter_is_a_bad_request_naming_the_problem(world: World) -> None:
    olga = client_for(world, "olga")

    def go() -> list[str]:
        olga.create_project("p")
        for lr in (0.1, 0.2):
            olga.create_run("p", name=f"lr{lr}", config={"lr": lr})
        return [r.name for r in olga.runs("p", filter="params.lr > 0.15", page_size=1)]

    assert await in_thread(go) == ["lr0.2"]
    with pytest.raises(BadRequest, match="column"):
        await in_thread(lambda: olga.runs_page("p", filter="params.lr >"))
    olga.close()


async def test_run_ids_resolve_prefixes_among_visible_runs_only(world: World) -> None:
    olga, pete = client_for(world, "olga"), client_for(world, "pete")

    def go() -> None:
        olga.create_project("olgas")
        pete.create_project("petes")
        olga.create_run("olgas", run_id="abc1" + "0" * 28)
        olga.create_run("olgas", run_id="abc2" + "0" * 28)
        pete.create_run("petes", run_id="abc3" + "0" * 28)

    await in_thread(go)
    assert await in_thread(lambda: olga.run_ids("abc")) == ["abc1" + "0" * 28, "abc2" + "0" * 28]
    assert await in_thread(lambda: olga.run_ids("abc3")) == []  # pete's: not even a hint
    assert await in_thread(lambda: pete.run_ids("abc")) == ["abc3" + "0" * 28]
    root = client_for(world, "root")
    assert len(await in_thread(lambda: root.run_ids("ab"))) == 3
    with pytest.raises(InvalidRequest, match="hex"):
        await in_thread(lambda: olga.run_ids("XYZ"))
    for c in (olga, pete, root):
        c.close()


async def test_grants_keys_users_and_audit(world: World) -> None:
    olga, root = client_for(world, "olga"), client_for(world, "root")

    def go() -> None:
        olga.create_project("shared")
        olga.grant("shared", "pete", "viewer")
        assert [p.role for p in client_for(world, "pete").projects()] == [ProjectRole.VIEWER]
        olga.revoke("shared", "pete")
        assert client_for(world, "pete").projects() == []
        created = olga.create_key("ci")
        assert created.key.scope is KeyScope.WRITE  # as the dashboard's form
        assert created.token not in repr(created)
        assert "ci" in [k.name for k in olga.api_keys()]
        olga.revoke_key(created.key.id)
        assert {u.username for u in root.users()} >= {"olga", "pete", "root"}
        actions = [e.action for e in root.audit(page_size=2)]
        assert len(actions) > 2  # more than one page

    await in_thread(go)
    with pytest.raises(NotFound):
        await in_thread(lambda: olga.revoke("no-such-project", "pete"))
    olga.close()
    root.close()


async def test_a_checksum_mismatch_comes_back_as_its_own_class(world: World) -> None:
    olga = client_for(world, "olga")

    def go() -> None:
        olga.create_project("p")
        run = olga.create_run("p")
        data = b"the declared bytes"
        spec = {"name": "f", "size": len(data), "sha256": hashlib.sha256(b"other").hexdigest()}
        made = olga.send("POST", f"/api/v1/runs/{run.id}/artifacts", json=spec).json()
        headers = {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
        olga.send("PUT", f"/api/v1/artifacts/{made['id']}/content", content=data, headers=headers)

    with pytest.raises(ChecksumMismatch) as raised:
        await in_thread(go)
    assert raised.value.code == "checksum_mismatch"
    olga.close()


async def test_artifact_ids_resolve_among_visible_artifacts_only(world: World) -> None:
    olga, pete = client_for(world, "olga"), client_for(world, "pete")

    def upload(client: Client, project: str, data: bytes) -> str:
        client.create_project(project)
        run = client.create_run(project)
        spec = {"name": "f", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        made = client.send("POST", f"/api/v1/runs/{run.id}/artifacts", json=spec).json()
        return str(made["id"])

    olgas = await in_thread(lambda: upload(olga, "olgas", b"x"))
    petes = await in_thread(lambda: upload(pete, "petes", b"y"))
    assert await in_thread(lambda: olga.artifact_ids(olgas[:6])) == [olgas]
    assert await in_thread(lambda: olga.artifact_ids(petes[:6])) == []
    other = await in_thread(lambda: upload(olga, "second", b"z"))
    project_id = (await in_thread(lambda: olga.project("olgas"))).id
    token = world.key("olga", Scope.READ, project_id=project_id)
    bound = Client(ApiClient(world.base_url, token, transport=_AppTransport(world.app)))
    assert await in_thread(lambda: bound.artifact_ids(olgas)) == [olgas]
    assert await in_thread(lambda: bound.artifact_ids(other)) == []  # olga's, another project
    root = client_for(world, "root")
    assert await in_thread(lambda: root.artifact_ids(petes)) == [petes]
    with pytest.raises(InvalidRequest, match="hex"):
        await in_thread(lambda: root.artifact_ids("../"))
    for c in (olga, pete, bound, root):
        c.close()


async def test_runs_sorted_as_the_dashboard_sorts_a_page_at_a_time(world: World) -> None:
    olga, pete = client_for(world, "olga"), client_for(world, "pete")

    def go() -> dict[str, list[str]]:
        olga.create_project("p")
        for n, acc in enumerate((0.5, None, 0.9, 0.7)):
            run = olga.create_run("p", name=f"r{n}", config={"opt": {"lr": n / 10}})
            if acc is not None:
                one = {"steps": [0], "times": [0.0], "values": [acc]}
                olga.post_metrics(run.id, {"batch_id": f"{n}" * 32, "metrics": {"val/acc": one}})
        names = {}
        for sort, desc in (("metrics.val/acc", True), ("metrics.val/acc", False),
                           ("params.opt.lr", True), ("name", False)):  # fmt: skip
            found = olga.runs("p", sort=sort, descending=desc, page_size=1,
                              config_keys=["opt.lr"])  # fmt: skip
            names[f"{sort} {desc}"] = [r.name for r in found]
        filtered = olga.runs("p", sort="name", descending=False, filter="params.opt.lr >= 0.2")
        names["filtered"] = [r.name for r in filtered]
        first = olga.runs_page("p", sort="metrics.val/acc", limit=1, count=True)
        names["first"] = [f"{r.name} {r.metrics} {first.total}" for r in first.runs]
        return names

    names = await in_thread(go)
    assert names["metrics.val/acc True"] == ["r2", "r3", "r0", "r1"]  # without a value: last
    assert names["metrics.val/acc False"] == ["r0", "r3", "r2", "r1"]
    assert names["params.opt.lr True"] == ["r3", "r2", "r1", "r0"]
    assert names["name False"] == ["r0", "r1", "r2", "r3"]
    assert names["filtered"] == ["r2", "r3"]
    assert names["first"] == ["r2 {'val/acc': 0.9} 4"]  # the sort metric's value, the count
    with pytest.raises(BadRequest, match="sort"):
        await in_thread(lambda: list(olga.runs("p", sort="colour")))
    with pytest.raises(NotFound):
        await in_thread(lambda: list(pete.runs("p", sort="name")))
    olga.close()
    pete.close()
