"""Abandoned uploads expire (artifacts.incomplete_upload_hours), on SQLite and PostgreSQL:
their quota comes back at the next declaration and in the server's periodic sweep, their
file and row go, each expiry is audited; young uploads, uploads being written and finished
artifacts stay. Time moves through the service's clock; nothing sleeps for hours."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from safeboard.artifacts import repository as artifacts
from safeboard.artifacts import service as service_module
from safeboard.artifacts.expiry import expiry_sweeps, sweep_periodically
from safeboard.artifacts.models import ArtifactRow
from safeboard.artifacts.service import EXPIRY_ACTOR, ArtifactService
from safeboard.artifacts.store import LocalStore
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditEntry
from safeboard.auth.permissions import Role
from safeboard.client.artifacts import upload_file
from safeboard.client.http import ApiClient
from safeboard.errors import Gone, NotFound
from safeboard.settings import Settings
from safeboard.storage import create_engine, pending_model_changes, upgrade
from safeboard.storage.migrate import alembic_config
from safeboard.tables import Base  # every domain's tables, for the model check
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifacts import as_user, declare, put, service, stored_files, uploaded

pytestmark = pytest.mark.anyio

HOURS = 24  # artifacts.incomplete_upload_hours in these tests (the default)
QUOTA = 1_500_000


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(
        make_settings,
        db_url,
        artifacts={"max_file_bytes": 1_000_000, "project_quota_bytes": QUOTA,
                   "incomplete_upload_hours": HOURS},
    )  # fmt: skip
    built.user("admin", Role.ADMIN)
    built.user("olga")
    yield built
    await built.close()


def later(world: World, hours: float) -> datetime:
    """Move the artifact service's clock ``hours`` past now; the moment it shows."""
    moment = datetime.now(UTC) + timedelta(hours=hours)
    service(world).clock = lambda: moment
    return moment


async def project_run(client: httpx.AsyncClient, project: str = "mnist") -> str:
    assert (await client.post("/api/v1/projects", json={"name": project})).status_code == 201
    run = await client.post(f"/api/v1/projects/{project}/runs", json={"name": "baseline"})
    assert run.status_code == 201, run.text
    return str(run.json()["id"])


async def partial(client: httpx.AsyncClient, run_id: str, size: int, sent: int, name: str) -> str:
    """An upload declared with ``size`` bytes of which ``sent`` arrived, then abandoned."""
    data = os.urandom(size)
    made = await declare(client, run_id, data, name=name)
    assert made.status_code == 201, made.text
    artifact_id = str(made.json()["id"])
    assert (await put(client, artifact_id, data[:sent])).json()["received"] == sent
    return artifact_id


def expiry_entries(world: World) -> list[AuditEntry]:
    with world.services.engine.connect() as conn:
        return audit.entries(conn, action="artifact.expired")


def file_of(world: World, artifact_id: str) -> Path:
    return world.settings.artifact_dir / artifact_id[:2] / artifact_id


def row_of(world: World, artifact_id: str) -> artifacts.Artifact | None:
    with world.services.engine.connect() as conn:
        return artifacts.get(conn, artifact_id)


def _locked(path: Path) -> bool:
    """Whether a writer holds ``path``'s lock (the store creates the file, then locks it:
    a file that merely exists may not be claimed yet). Read from /proc/locks, so that the
    look takes no lock the writer could meet."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


@asynccontextmanager
async def writing(
    world: World, client: httpx.AsyncClient, artifact_id: str, first: bytes, rest: bytes
) -> AsyncIterator[dict[str, httpx.Response]]:
    """An upload request in progress for the block: ``first`` is written (the request
    holds the file's lock), ``rest`` follows when the block ends; then ``["put"]`` holds
    the answer."""
    gate = anyio.Event()

    async def body() -> AsyncIterator[bytes]:  # the server writes in 1 MiB steps or at the end
        yield first
        await gate.wait()
        yield rest

    results: dict[str, httpx.Response] = {}

    async def upload() -> None:
        results["put"] = await client.put(
            f"/api/v1/artifacts/{artifact_id}/content", content=body(),
            headers={"Upload-Offset": "0"},
        )  # fmt: skip

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(upload)
        with anyio.fail_after(10):
            while not _locked(file_of(world, artifact_id)):
                await anyio.sleep(0.02)
        try:
            yield results
        finally:
            gate.set()


async def test_a_stale_upload_gives_its_quota_back_at_the_next_declaration(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    stale = await partial(olga, run_id, 900_000, 300_000, "abandoned.bin")
    assert file_of(world, stale).stat().st_size == 300_000
    later(world, HOURS + 1)
    fresh = await declare(olga, run_id, os.urandom(900_000), name="new.bin")
    assert fresh.status_code == 201, fresh.text  # 1.8 MB with the stale one: over the quota
    assert not file_of(world, stale).exists()
    assert row_of(world, stale) is None
    # The stale upload is gone for its client too: 410, which tells it to start over (a
    # deleted one is a 404 and stays deleted); to anyone without its run, the usual 404.
    for gone in (
        await olga.get(f"/api/v1/artifacts/{stale}"),
        await put(olga, stale, b"x", 300_000),
    ):
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "gone"
        assert "declare it again" in gone.json()["error"]["message"]
    world.user("eve")
    stranger = await as_user(world, "eve").get(f"/api/v1/artifacts/{stale}")
    assert (stranger.status_code, stranger.json()["error"]["message"]) == (
        404, "no such artifact",
    )  # fmt: skip
    assert [p.name for p in stored_files(world)] == []  # the PUT left no file behind
    (entry,) = expiry_entries(world)
    assert entry.actor == EXPIRY_ACTOR
    assert entry.target == f"artifact:{stale}"
    assert entry.detail["run"] == run_id
    assert entry.detail["project"] == "mnist"
    assert entry.detail["name"] == "abandoned.bin"
    assert (entry.detail["bytes"], entry.detail["received"]) == (900_000, 300_000)
    with world.services.engine.connect() as conn:
        assert audit.verify(conn).ok


async def test_a_young_upload_is_kept_and_counts(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(900_000)
    young = (await declare(olga, run_id, data, upload_id="young-upload")).json()["id"]
    assert (await put(olga, young, data[:100_000])).status_code == 200
    later(world, HOURS - 1)
    refused = await declare(olga, run_id, os.urandom(900_000), name="second.bin")
    assert refused.status_code == 413
    # Bytes arriving are activity: idle counts from the last request, not the declaration.
    assert (await put(olga, young, data[100_000:200_000], 100_000)).status_code == 200
    later(world, 2 * HOURS - 2)  # 2 h less than HOURS after those bytes
    assert (await declare(olga, run_id, os.urandom(900_000), name="third")).status_code == 413
    assert service(world).expire_idle_uploads() == 0
    assert file_of(world, young).stat().st_size == 200_000
    assert (await olga.get(f"/api/v1/artifacts/{young}")).json()["received"] == 200_000
    assert expiry_entries(world) == []
    # Declaring it again (a client resuming) is activity too.
    assert (await declare(olga, run_id, data, upload_id="young-upload")).status_code == 200
    later(world, 3 * HOURS - 3)
    assert service(world).expire_idle_uploads() == 0
    finished = await put(olga, young, data[200_000:], 200_000)
    assert finished.json()["state"] == "ready"


async def test_an_upload_being_written_is_not_expired(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(900_000)
    busy = (await declare(olga, run_id, data)).json()["id"]
    async with writing(world, olga, busy, data[:10_000], data[10_000:]) as results:
        later(world, HOURS + 1)  # idle by its row: declared over a day ago, nothing recorded
        assert await anyio.to_thread.run_sync(service(world).expire_idle_uploads) == 0
        refused = await declare(olga, run_id, os.urandom(900_000), name="other")
        assert refused.status_code == 413  # kept, so it still counts
        assert row_of(world, busy) is not None
    assert results["put"].json()["state"] == "ready"
    assert expiry_entries(world) == []
    got = await olga.get(f"/api/v1/artifacts/{busy}/content")
    assert got.content == data


async def test_an_upload_resumed_after_it_was_listed_as_idle_is_kept(world: World) -> None:
    """A sweep lists the idle uploads, then deletes each only if it is still idle: a client
    that resumed in between (or another replica that expired it first) wins."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(1000)
    resumed = (await declare(olga, run_id, data)).json()["id"]
    moment = later(world, HOURS + 1)
    cutoff = moment - timedelta(hours=HOURS)
    with world.services.engine.connect() as conn:
        assert [a.id for a in artifacts.stale_uploads(conn, cutoff)] == [resumed]
    assert (await put(olga, resumed, data[:10])).json()["received"] == 10  # at `moment`
    with world.services.engine.begin() as conn:
        assert not artifacts.delete_stale(conn, resumed, cutoff)
    assert row_of(world, resumed) is not None


async def test_bytes_written_for_a_row_that_vanished_leave_no_file(world: World) -> None:
    """The race the expiry makes possible: a request checked the row, then another replica
    expired it before the request's first byte. Its file would belong to nothing."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(900_000)
    artifact_id = (await declare(olga, run_id, data)).json()["id"]
    # A chunk, not the whole file: the request ends with the bytes recorded, or not.
    async with writing(world, olga, artifact_id, data[:10_000], data[10_000:20_000]) as results:
        with world.services.engine.begin() as conn:  # what the other replica's expiry did
            conn.execute(sa.delete(ArtifactRow).where(ArtifactRow.id == artifact_id))
    assert results["put"].status_code == 404
    assert stored_files(world) == []


async def test_finished_artifacts_never_expire(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    done = await uploaded(olga, run_id, b"weights")
    empty = (await declare(olga, run_id, b"", name="empty")).json()
    assert empty["state"] == "ready"
    later(world, 24 * 3650)
    assert service(world).expire_idle_uploads() == 0
    assert (await declare(olga, run_id, b"x", name="later")).status_code == 201
    assert (await olga.get(f"/api/v1/artifacts/{done['id']}/content")).content == b"weights"
    assert (await olga.get(f"/api/v1/artifacts/{empty['id']}")).status_code == 200
    assert expiry_entries(world) == []


async def test_the_sweep_expires_uploads_of_projects_that_never_declare_again(
    world: World,
) -> None:
    olga = as_user(world, "olga")
    stale = []
    for project in ("mnist", "cifar"):
        run_id = await project_run(olga, project)
        stale.append(await partial(olga, run_id, 500_000, 1000, f"{project}.bin"))
    later(world, HOURS + 1)
    # Declared after the clock moved, in a project of its own (a declaration in the others
    # would expire their stale uploads: this test is about the sweep).
    young = await partial(olga, await project_run(olga, "svhn"), 100_000, 1000, "young.bin")
    # The server shutting down stops a sweep between two uploads.
    stopped = threading.Event()
    stopped.set()
    assert service(world).expire_idle_uploads(stopped) == 0
    # Two replicas sweep at once (their own services, one database, one store): each
    # upload expires once and is audited once.
    replica = ArtifactService(
        world.services.engine, LocalStore(world.settings.artifact_dir), world.settings.artifacts,
        b"k" * 32, clock=service(world).clock,
    )  # fmt: skip
    counts = await asyncio.gather(
        anyio.to_thread.run_sync(service(world).expire_idle_uploads),
        anyio.to_thread.run_sync(replica.expire_idle_uploads),
    )
    assert sum(counts) == 2
    for artifact_id in stale:
        assert row_of(world, artifact_id) is None
        assert not file_of(world, artifact_id).exists()
    assert row_of(world, young) is not None
    assert sorted(e.target for e in expiry_entries(world)) == sorted(f"artifact:{a}" for a in stale)
    assert {e.detail["project"] for e in expiry_entries(world)} == {"mnist", "cifar"}


class _Failing:
    """A sweeper whose database is unreachable the first time."""

    def __init__(self, real: ArtifactService) -> None:
        self.real = real
        self.calls = 0
        self.swept = threading.Event()

    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int:
        self.calls += 1
        if self.calls == 1:
            with create_engine("sqlite:////nonexistent/dir/x.db").connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        expired = self.real.expire_idle_uploads(stop)
        self.swept.set()
        return expired


async def test_the_periodic_sweep_survives_a_failure_and_keeps_sweeping(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    olga = as_user(world, "olga")
    stale = await partial(olga, await project_run(olga), 500_000, 1000, "a.bin")
    later(world, HOURS + 1)
    sweeper = _Failing(service(world))
    with caplog.at_level(logging.INFO, logger="safeboard.artifacts"):
        task = asyncio.create_task(sweep_periodically(sweeper, every=0.05, first=0))
        with anyio.fail_after(10):
            while not sweeper.swept.is_set():
                await anyio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert row_of(world, stale) is None
    assert "the sweep of abandoned uploads failed" in caplog.text
    assert "expired 1 abandoned upload" in caplog.text


async def test_the_app_lifespan_starts_and_stops_the_sweep(world: World) -> None:
    def sweeps() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "safeboard-upload-expiry"]

    async with world.app.router.lifespan_context(world.app):
        (task,) = sweeps()
        await asyncio.sleep(0.05)
        assert not task.done()  # waiting for its first sweep, not crashed
    assert task.cancelled()
    assert sweeps() == []
    # The context the lifespan uses, with a short first delay: it really sweeps.
    olga = as_user(world, "olga")
    stale = await partial(olga, await project_run(olga), 500_000, 1000, "a.bin")
    later(world, HOURS + 1)
    async with expiry_sweeps(service(world), first=0, every=60):
        with anyio.fail_after(10):
            while row_of(world, stale) is not None:
                await anyio.sleep(0.02)


class _Slow:
    """A sweep that is still expiring when the server shuts down."""

    def __init__(self) -> None:
        self.started, self.finished = threading.Event(), threading.Event()

    def expire_idle_uploads(self, stop: threading.Event | None = None) -> int:
        self.started.set()
        assert stop is not None
        stop.wait(10)  # told to stop: it ends "after the current upload"
        threading.Event().wait(0.3)
        self.finished.set()
        return 0


async def test_shutdown_waits_for_a_sweep_in_progress() -> None:
    slow = _Slow()
    async with expiry_sweeps(slow, first=0, every=60):
        with anyio.fail_after(10):
            while not slow.started.is_set():
                await anyio.sleep(0.01)
    assert slow.finished.is_set()  # the database may be closed now: nothing uses it


class _AppTransport(httpx.BaseTransport):
    """The synchronous client (SDK, CLI) against the in-process app: each request is run
    on the test's event loop from the client's worker thread."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, httpx.Headers, bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.inner.handle_async_request(forwarded)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = anyio.from_thread.run(send)
        return httpx.Response(status, headers=headers, content=content)


async def test_a_client_whose_upload_was_deleted_leaves_it_deleted(
    world: World, tmp_path: Path
) -> None:
    """Someone removed the half-sent upload (say, to stop it): the client's next request
    gets 404, not 410, and it does not send the file again."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(300_000))
    client = ApiClient(world.base_url, world.key("olga"), transport=_AppTransport(world.app))
    removed: list[str] = []

    def progress(phase: str, done: int, _total: int) -> None:
        if phase == "upload" and done == 200_000 and not removed:
            (listed,) = anyio.from_thread.run(
                lambda: olga.get(f"/api/v1/runs/{run_id}/artifacts")
            ).json()["items"]
            deleted = anyio.from_thread.run(
                lambda: olga.delete(f"/api/v1/artifacts/{listed['id']}")
            )
            assert deleted.status_code == 204, deleted.text
            removed.append(listed["id"])

    with pytest.raises(NotFound) as refused:
        await anyio.to_thread.run_sync(
            lambda: upload_file(client, run_id, path, chunk_size=100_000, progress=progress)
        )
    client.close()
    assert not isinstance(refused.value, Gone)
    assert removed
    assert (await olga.get(f"/api/v1/runs/{run_id}/artifacts")).json()["items"] == []


async def test_a_client_whose_upload_expired_starts_it_over(world: World, tmp_path: Path) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(300_000)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    client = ApiClient(
        world.base_url, world.key("olga"), transport=_AppTransport(world.app)
    )  # fmt: skip
    expired: list[int] = []

    def progress(phase: str, done: int, _total: int) -> None:
        # The second chunk is read, not yet sent: the upload lies idle past the limit and
        # the sweep takes it (the first chunk's 100,000 bytes with it).
        if phase == "upload" and done == 200_000 and not expired:
            later(world, HOURS + 1)
            expired.append(service(world).expire_idle_uploads())

    artifact = await anyio.to_thread.run_sync(
        lambda: upload_file(client, run_id, path, chunk_size=100_000, progress=progress)
    )
    client.close()
    assert expired == [1]
    assert artifact["state"] == "ready"
    assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
    (entry,) = expiry_entries(world)
    assert entry.target != f"artifact:{artifact['id']}"  # a fresh artifact, same upload id
    assert entry.detail["received"] == 100_000
    assert (await olga.get(f"/api/v1/artifacts/{artifact['id']}/content")).content == data


def _rows_at_0004(engine: sa.Engine, created: datetime, ready: datetime) -> None:
    """A database at revision 0004 holding a run with an unfinished and a ready artifact."""
    with engine.connect() as conn, conn.begin():
        command.upgrade(alembic_config(conn), "0004")
    tables = sa.MetaData()
    tables.reflect(engine, only=["projects", "runs", "artifacts"])
    run = {"id": "r" * 32, "project_id": 1, "name": "r", "status": "running", "params": {},
           "system": {}, "notes": "", "created_at": created}  # fmt: skip
    artifact = {"run_id": run["id"], "project_id": 1, "kind": "file", "sha256": "0" * 64,
                "content_type": "text/plain", "size": 10, "created_at": created}  # fmt: skip
    rows = [
        ("projects", {"id": 1, "name": "p", "description": "", "created_at": created}),
        ("runs", run),
        ("artifacts", {**artifact, "id": "a" * 32, "name": "partial", "state": "uploading",
                       "received": 4}),
        ("artifacts", {**artifact, "id": "b" * 32, "name": "done", "state": "ready",
                       "received": 10, "ready_at": ready, "upload_id": "u" * 8}),
    ]  # fmt: skip
    with engine.begin() as conn:
        for table, values in rows:
            conn.execute(sa.insert(tables.tables[table]).values(values))


def test_the_migration_backfills_last_activity(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        ready = created + timedelta(hours=5)
        _rows_at_0004(engine, created, ready)
        upgrade(engine)
        with engine.connect() as conn:
            partial_row = artifacts.get(conn, "a" * 32)
            done_row = artifacts.get(conn, "b" * 32)
        assert partial_row is not None
        assert done_row is not None
        assert partial_row.updated_at == created  # idle since it was declared
        assert done_row.updated_at == ready
        assert pending_model_changes(engine) == []
        assert Base.metadata.tables["artifacts"].c.updated_at.nullable is False
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # NOT NULL now
            conn.execute(sa.update(ArtifactRow).values(updated_at=None))
    finally:
        engine.dispose()


async def test_a_declaration_expires_only_what_its_quota_needs(world: World) -> None:
    """With room in the quota an idle upload declared again resumes where it stopped; when
    a new file needs room, the oldest idle uploads go, and only until it fits."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(400_000)
    resumable = await declare(olga, run_id, data, name="resumable.bin", upload_id="u" * 16)
    resumable_id = resumable.json()["id"]
    assert (await put(olga, resumable_id, data[:100_000])).json()["received"] == 100_000
    oldest = await partial(olga, run_id, 400_000, 10, "oldest.bin")
    later(world, 1)  # "oldest" stays older than the one after it
    second = await partial(olga, run_id, 400_000, 10, "second.bin")
    later(world, HOURS + 2)  # all three idle now; 1,200,000 of 1,500,000 held
    again = await declare(olga, run_id, data, name="resumable.bin", upload_id="u" * 16)
    assert again.status_code == 200, again.text  # room enough: nothing expired, it resumes
    assert (again.json()["id"], again.json()["received"]) == (resumable_id, 100_000)
    assert expiry_entries(world) == []
    needs_room = await declare(olga, run_id, os.urandom(500_000), name="big.bin")
    assert needs_room.status_code == 201, needs_room.text
    # 1,200,000 + 500,000 > 1,500,000: one idle upload (the oldest) had to go, no more.
    assert [e.target for e in expiry_entries(world)] == [f"artifact:{oldest}"]
    assert row_of(world, oldest) is None
    assert row_of(world, second) is not None
    assert row_of(world, resumable_id) is not None  # declared again: active, not idle


async def test_declaring_a_finished_upload_again_answers_with_it(world: World) -> None:
    """The CLI run twice on the same file: the second declaration finds the finished
    artifact (200, ready), idle or not, and makes nothing new."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(2000)
    done = await uploaded(olga, run_id, data, upload_id="w" * 16)
    for hours in (0, HOURS + 1):
        later(world, hours)
        again = await declare(olga, run_id, data, upload_id="w" * 16)
        assert again.status_code == 200, again.text
        assert (again.json()["id"], again.json()["state"]) == (done["id"], "ready")
    assert len((await olga.get(f"/api/v1/runs/{run_id}/artifacts")).json()["items"]) == 1


async def test_a_resume_that_finds_its_upload_just_expired_starts_a_new_one(world: World) -> None:
    """The race with another replica's sweep: the row goes between the lookup and the
    touch. The declaration makes a fresh artifact instead of answering with a dead one."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(1000)
    first = (await declare(olga, run_id, data, upload_id="v" * 16)).json()["id"]
    original = artifacts.touch

    def vanishing(conn: sa.Connection, artifact_id: str, now: datetime) -> bool:
        conn.execute(sa.delete(ArtifactRow).where(ArtifactRow.id == artifact_id))  # expired
        return original(conn, artifact_id, now)

    artifacts.touch = vanishing
    try:
        again = await declare(olga, run_id, data, upload_id="v" * 16)
    finally:
        artifacts.touch = original
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first
    assert row_of(world, again.json()["id"]) is not None
    assert (await put(olga, again.json()["id"], data)).json()["state"] == "ready"


async def test_an_idle_upload_resumed_by_a_put_is_not_expired_under_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK back after a long outage sends its next chunk straight away (no declaration).
    A sweep in the moment between the request releasing the file and recording the bytes
    must not take the upload: the request made it active when it began."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(300_000)
    made = (await declare(olga, run_id, data, name="m.bin")).json()["id"]
    assert (await put(olga, made, data[:100_000])).json()["received"] == 100_000
    later(world, HOURS + 1)
    swept: list[int] = []
    original = service(world)._keep_digest

    def sweep_in_the_window(artifact_id: str, offset: int, digest: Any) -> None:
        original(artifact_id, offset, digest)  # the writer is closed: no lock protects it
        swept.append(service(world).expire_idle_uploads())

    monkeypatch.setattr(service(world), "_keep_digest", sweep_in_the_window)
    resumed = await put(olga, made, data[100_000:200_000], 100_000)
    assert swept == [0]
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["received"] == 200_000
    monkeypatch.undo()
    assert (await put(olga, made, data[200_000:], 200_000)).json()["state"] == "ready"


async def test_a_put_for_an_expired_upload_says_gone(world: World) -> None:
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    stale = await partial(olga, run_id, 500_000, 1000, "a.bin")
    later(world, HOURS + 1)
    assert service(world).expire_idle_uploads() == 1
    answer = await put(olga, stale, b"x" * 10, 1000)
    assert (answer.status_code, answer.json()["error"]["code"]) == (410, "gone")
    assert stored_files(world) == []


async def test_the_sweep_walks_every_batch_and_passes_over_a_busy_upload(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "_EXPIRY_BATCH", 2)
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    data = os.urandom(200_000)
    busy = (await declare(olga, run_id, data, name="busy.bin")).json()["id"]
    rest = [await partial(olga, run_id, 100_000, 10, f"p{i}.bin") for i in range(4)]
    async with writing(world, olga, busy, data[:50_000], data[50_000:60_000]):
        later(world, HOURS + 1)  # every one idle by the clock, the first one written now
        assert service(world).expire_idle_uploads() == 4  # batches of 2, 2 and 1
        assert row_of(world, busy) is not None
    assert [row_of(world, a) for a in rest] == [None] * 4


async def test_a_declaration_that_cannot_fit_expires_nothing(world: World) -> None:
    """Finished artifacts hold the quota: expiring every idle upload would still not make
    room, so none is expired for nothing; the answer is the quota's 413."""
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    await uploaded(olga, run_id, os.urandom(900_000), name="kept.bin")
    stale = await partial(olga, run_id, 300_000, 1000, "stale.bin")
    later(world, HOURS + 1)
    refused = await declare(olga, run_id, os.urandom(700_000), name="too-big.bin")
    assert refused.status_code == 413, refused.text
    assert row_of(world, stale) is not None
    assert expiry_entries(world) == []
