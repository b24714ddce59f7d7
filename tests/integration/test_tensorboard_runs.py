"""TensorBoard over runs (the dashboard's button): the import keeps each event file as an
artifact of its run (``tensorboard/…``, once, replaced when it changed);
``POST /api/v1/tensorboards {"runs": [...]}`` opens an instance over copies of those
files only, for a caller who may read every run (404 otherwise, the same answer whether
the run exists or not); the proxy checks read access again while it is open (a revoked
grant: 404); audited with the run ids. The upstream is the recording stand-in
(tests/support/echo_upstream.py) on the instance's socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from safeboard.audit import service as audit_service
from safeboard.auth.permissions import Scope
from safeboard.client import NO_RETRY, Client
from safeboard.client.http import ApiClient
from safeboard.sdk.tbimport import import_tensorboard, run_id_for
from safeboard.sdk.tbupload import upload_event_files
from safeboard.settings import Settings
from safeboard.tensorboards.runsets import safe_path
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport
from tests.integration.test_tensorboard_proxy import ECHO, ORIGIN

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(
    make_settings: Callable[..., Settings], db_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[World]:  # fmt: skip
    monkeypatch.setenv("SAFEBOARD_SPOOL_DIR", str(tmp_path / "spool"))
    built = build_world(make_settings, db_url)
    for name in ("olga", "pete"):
        built.user(name)
    built.services.tensorboards.supervisor.child = ECHO
    built.services.tensorboards.listening(ORIGIN)
    yield built
    built.services.tensorboards.close()
    await built.close()


class _LoopTransport(_AppTransport):
    """The app transport from any thread (the import's sender threads too): the test's
    event loop is named by its token."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.token = anyio.lowlevel.current_token()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, httpx.Headers, bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.inner.handle_async_request(forwarded)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = anyio.from_thread.run(send, token=self.token)
        return httpx.Response(status, headers=headers, content=content)


def client_for(world: World, name: str, scope: Scope = Scope.ADMIN) -> Client:
    api = ApiClient(world.base_url, world.key(name, scope), transport=_LoopTransport(world.app))
    return Client(api, retry=NO_RETRY)


def scalars(directory: Path, steps: int = 3) -> Path:
    """A real event file written by tensorboardX."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(directory))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    (path,) = directory.glob("*.tfevents.*")
    return path


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


def kept(client: Client, run_id: str) -> dict[str, tuple[str, int]]:
    return {
        a.name: (a.id, a.size)
        for a in client.artifacts(run_id)
        if a.name.startswith("tensorboard/")
    }


async def test_the_import_keeps_each_event_file_once_and_replaces_a_changed_one(
    world: World, tmp_path: Path
) -> None:
    olga = client_for(world, "olga")
    logdir = tmp_path / "logs"
    first = scalars(logdir / "lr0.1")
    await in_thread(lambda: import_tensorboard(olga, logdir, "mnist", keep_files=False))
    run_id = run_id_for("mnist", logdir / "lr0.1")
    assert await in_thread(lambda: kept(olga, run_id)) == {}  # --no-keep-event-files
    await in_thread(lambda: import_tensorboard(olga, logdir, "mnist"))
    name = f"tensorboard/{first.name}"
    held = await in_thread(lambda: kept(olga, run_id))
    assert held == {name: (held[name][0], first.stat().st_size)}
    await in_thread(lambda: import_tensorboard(olga, logdir, "mnist"))  # nothing changed
    assert await in_thread(lambda: kept(olga, run_id)) == held
    with first.open("ab") as grown:  # the file grew: uploaded again, replacing the first
        grown.write(b"\0" * 10)
    sent = await in_thread(lambda: upload_event_files(olga, run_id, [(first, first.name)]))
    assert sent == 1
    now = await in_thread(lambda: kept(olga, run_id))
    assert list(now) == [name]
    assert now[name][0] != held[name][0]
    assert now[name][1] == first.stat().st_size


async def test_open_over_runs_checks_read_access_on_every_run(world: World, tmp_path: Path) -> None:
    olga, pete = client_for(world, "olga"), client_for(world, "pete")
    logdir, theirs = tmp_path / "logs", tmp_path / "theirs"
    files = [scalars(logdir / "a"), scalars(logdir / "b/../weird name")]
    scalars(theirs / "p")

    def setup() -> None:
        import_tensorboard(olga, logdir, "mnist")
        import_tensorboard(pete, theirs, "private")

    await in_thread(setup)
    a, b = run_id_for("mnist", logdir / "a"), run_id_for("mnist", logdir / "weird name")
    private = run_id_for("private", theirs / "p")
    as_olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    as_pete = world.client(Authorization=f"Bearer {world.key('pete', Scope.READ)}")

    # Another user's run, a run that does not exist, a mix: one 404, the same answer.
    refusals = [
        await as_olga.post("/api/v1/tensorboards", json={"runs": [private]}),
        await as_olga.post("/api/v1/tensorboards", json={"runs": ["f" * 32]}),
        await as_olga.post("/api/v1/tensorboards", json={"runs": [a, private]}),
        await as_pete.post("/api/v1/tensorboards", json={"runs": [a]}),
    ]
    assert [r.status_code for r in refusals] == [404] * 4
    assert len({r.json()["error"]["message"] for r in refusals}) == 1
    assert world.services.tensorboards.supervisor.instances() == []

    opened = await as_olga.post("/api/v1/tensorboards", json={"runs": [a, b]})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["started"] is True
    assert body["link"].startswith(f"{ORIGIN}/enter#ticket=")
    instance = world.services.tensorboards.supervisor.get(body["id"])
    assert instance is not None
    assert instance.run_ids == {a, b}
    # Copies of the runs' own files, in the instance's 0700 directory, by run name.
    assert instance.logdir == instance.directory / "logdir"
    found = instance.logdir.rglob("*.tfevents.*")
    laid_out = sorted(p.relative_to(instance.logdir).as_posix() for p in found)
    assert laid_out == sorted([f"a/{files[0].name}", f"weird_name/{files[1].name}"])
    assert (instance.logdir / "a" / files[0].name).read_bytes() == files[0].read_bytes()
    again = (await as_olga.post("/api/v1/tensorboards", json={"runs": [b, a]})).json()
    assert (again["id"], again["started"]) == (body["id"], False)
    entries = audit_service.list_entries(world.services.engine, action="tensorboard.started")
    assert [(e.actor, e.target, e.detail) for e in entries] == [
        ("olga", body["id"], {"runs": sorted([a, b])})
    ]
    # Two runs of the same name: directories made unique.
    twin = scalars(tmp_path / "other" / "a")
    await in_thread(lambda: import_tensorboard(olga, tmp_path / "other", "mnist"))
    twin_id = run_id_for("mnist", tmp_path / "other" / "a")
    pair = (await as_olga.post("/api/v1/tensorboards", json={"runs": [a, twin_id]})).json()
    paired = world.services.tensorboards.supervisor.get(pair["id"])
    assert paired is not None
    named = {p.relative_to(paired.logdir).as_posix() for p in paired.logdir.rglob("*.tfevents.*")}
    suffix = max(a, twin_id)[:8]  # the second of the same name, by id
    assert len(named) == 2
    assert {n.split("/")[0] for n in named} == {"a", f"a-{suffix}"}
    assert f"{twin.name}" in {n.split("/")[1] for n in named}
    world.services.tensorboards.supervisor.stop(pair["id"])
    # A run without event files: said so.
    await in_thread(lambda: olga.create_run("mnist", run_id="c" * 32, name="plain"))
    plain = await as_olga.post("/api/v1/tensorboards", json={"runs": ["c" * 32]})
    assert plain.status_code == 422
    assert "event files" in plain.json()["error"]["message"]
    # The dashboard: the button on runs that keep event files only; the session's POST
    # needs its CSRF token.
    browser, csrf = await world.signed_in("olga")
    button = 'data-testid="open-tensorboard"'
    assert button in (await browser.get(f"/runs/{a}")).text
    assert button not in (await browser.get(f"/runs/{'c' * 32}")).text
    compare = (await browser.get(f"/compare?run={a}&run={'c' * 32}")).text
    assert "TensorBoard (1 of these runs)" in compare
    assert f'data-runs="[&quot;{a}&quot;]"' in compare  # the readable run with files only
    no_csrf = await browser.post("/api/v1/tensorboards", json={"runs": [a]})
    assert no_csrf.status_code == 403
    with_csrf = await browser.post(
        "/api/v1/tensorboards", json={"runs": [a, b]}, headers=world.unsafe(csrf)
    )
    assert (with_csrf.status_code, with_csrf.json()["id"]) == (200, body["id"])
    # Exactly one of runs and logdir; members may not name a directory.
    for bad in ({}, {"runs": []}, {"runs": [a], "logdir": "/"}):
        assert (await as_olga.post("/api/v1/tensorboards", json=bad)).status_code == 422
    write = world.client(Authorization=f"Bearer {world.key('olga')}")
    assert (await write.post("/api/v1/tensorboards", json={"logdir": "/"})).status_code == 403


async def test_a_revoked_grant_closes_the_instance(world: World, tmp_path: Path) -> None:
    olga = client_for(world, "olga")
    scalars(tmp_path / "logs" / "a")
    await in_thread(lambda: import_tensorboard(olga, tmp_path / "logs", "mnist"))
    await in_thread(lambda: olga.grant("mnist", "pete", "viewer"))
    run_id = run_id_for("mnist", tmp_path / "logs" / "a")
    as_pete = world.client(Authorization=f"Bearer {world.key('pete', Scope.READ)}")
    opened = await as_pete.post("/api/v1/tensorboards", json={"runs": [run_id]})
    assert opened.status_code == 200, opened.text
    app = world.services.tensorboards.application(secure=True, recheck_seconds=0)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as browser:
        ticket = opened.json()["link"].split("#ticket=", 1)[1]
        entered = await browser.post("/enter", content=ticket, headers={"Origin": ORIGIN})
        assert entered.status_code == 200, entered.text
        board = entered.json()["location"]
        assert (await browser.get(board)).status_code == 200
        await in_thread(lambda: olga.revoke("mnist", "pete"))
        assert (await browser.get(board)).status_code == 404
    # Olga's own instance over the same run is hers alone: Pete's cookie never opens it.
    as_olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    hers = await as_olga.post("/api/v1/tensorboards", json={"runs": [run_id]})
    assert hers.json()["id"] != opened.json()["id"]


def test_safe_paths() -> None:
    assert safe_path("lr0.1/seed1") == "lr0.1/seed1"
    assert safe_path("../../etc") == "__/__/etc"
    assert safe_path("/abs//x y/") == "abs/x_y"
    assert safe_path("") == "run"
    assert safe_path(".") == "_"


async def test_same_origin_mode_serves_tensorboard_under_tb_without_credentials(
    world: World, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """``tensorboard.same_origin``: no second listener; ``/tb/`` of the main origin goes
    to TensorBoard (its entry page and instances, with their own headers), every other
    path to safeboard (its CSP unchanged); the upstream sees no cookie, no Authorization,
    no CSRF token and no session binding."""
    from safeboard.auth.binding import BINDING_HEADER
    from safeboard.server.origins import SameOrigin, open_tensorboard_listener
    from safeboard.server.run import bind_socket

    settings = make_settings(tensorboard={"same_origin": True})
    assert open_tensorboard_listener(settings, bind_socket) is None
    services = world.services
    services.tensorboards.listening(world.base_url, same_origin=True)
    tensorboard = services.tensorboards.application(secure=False, same_origin=True)
    served = SameOrigin(world.app, tensorboard)
    transport = httpx.ASGITransport(app=served, client=("127.0.0.1", 50000))
    olga = client_for(world, "olga")
    scalars(tmp_path / "logs" / "a")
    await in_thread(lambda: import_tensorboard(olga, tmp_path / "logs", "mnist"))
    run_id = run_id_for("mnist", tmp_path / "logs" / "a")
    key = world.key("olga", Scope.READ)
    async with httpx.AsyncClient(transport=transport, base_url=world.base_url) as browser:
        opened = await browser.post(
            "/api/v1/tensorboards", json={"runs": [run_id]},
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert opened.status_code == 200, opened.text
        link = opened.json()["link"]
        assert link.startswith(f"{world.base_url}/tb/enter#ticket=")
        entry = await browser.get("/tb/enter")
        assert entry.status_code == 200
        (csp,) = [p for p in entry.headers.get_list("content-security-policy") if "script-src" in p]
        assert "script-src 'sha256-" in csp
        ticket = link.split("#ticket=", 1)[1]
        same = {"Origin": world.base_url}
        entered = await browser.post("/tb/enter", content=ticket, headers=same)
        assert entered.status_code == 200, entered.text
        board = entered.json()["location"]
        answer = await browser.get(
            f"{board}data/runs",
            headers={
                "Authorization": f"Bearer {key}",
                "X-CSRF-Token": "csrf-token-of-the-session",
                BINDING_HEADER: "binding-of-the-session",
                "Cookie": "safeboard-8080=session-id; "
                + "; ".join(f"{k}={v}" for k, v in browser.cookies.items()),
            },
        )
        assert answer.status_code == 200, answer.text
        instance = services.tensorboards.supervisor.get(opened.json()["id"])
        assert instance is not None
        headers = [
            json.loads(line)["headers"]
            for line in (instance.directory / "requests.jsonl").read_text().splitlines()
        ]
        leaked = {
            k for h in headers for k in h
            if k in ("cookie", "authorization", "x-csrf-token", BINDING_HEADER.lower())
        }  # fmt: skip
        assert not leaked, headers
        # Safeboard's pages keep safeboard's CSP; /tb/ paths never carry it.
        main = await browser.get("/login")
        assert "unsafe-eval" not in main.headers["content-security-policy"]
        assert main.headers["content-security-policy"] != csp
        assert (await browser.get("/tb/ffff/")).status_code == 404


async def test_an_event_file_missing_from_the_store_is_a_503(world: World, tmp_path: Path) -> None:
    olga = client_for(world, "olga")
    scalars(tmp_path / "logs" / "a")
    await in_thread(lambda: import_tensorboard(olga, tmp_path / "logs", "mnist"))
    run_id = run_id_for("mnist", tmp_path / "logs" / "a")
    ((artifact_id, _),) = (await in_thread(lambda: kept(olga, run_id))).values()
    world.services.artifacts.store.delete(artifact_id)  # lost from the disk
    as_olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.READ)}")
    answer = await as_olga.post("/api/v1/tensorboards", json={"runs": [run_id]})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "unavailable"
    assert world.services.tensorboards.supervisor.instances() == []
    assert list((world.settings.data_dir / "tensorboard").iterdir()) == []  # nothing left


async def test_an_import_into_a_renamed_projects_old_name_goes_to_the_project(
    world: World, tmp_path: Path
) -> None:
    """The old name answers 308 (project_moved, a NotFound): the import used to take it
    for "no such project" and create a new one under the old name, which also took the
    name from the renamed project's old links."""
    olga = client_for(world, "olga")
    await in_thread(lambda: olga.create_project("mnist"))
    await in_thread(lambda: olga.api.patch("/api/v1/projects/mnist", json={"name": "mnist-v2"}))
    logdir = tmp_path / "logs"
    scalars(logdir / "lr0.1")
    said: list[str] = []
    imported = await in_thread(
        lambda: import_tensorboard(olga, logdir, "mnist", keep_files=False, say=said.append)
    )
    assert [p.name for p in await in_thread(olga.projects)] == ["mnist-v2"]
    (run,) = imported
    assert run.run_id == run_id_for("mnist-v2", logdir / "lr0.1")  # as if named right
    assert (await in_thread(lambda: olga.run(run.run_id))).project == "mnist-v2"
    assert any("renamed to 'mnist-v2'" in line for line in said)
    again = await in_thread(lambda: import_tensorboard(olga, logdir, "mnist-v2", keep_files=False))
    assert [r.run_id for r in again] == [run.run_id]  # the same run, not a second one
