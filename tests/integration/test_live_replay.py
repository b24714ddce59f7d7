"""Live updates have ids, and a stream that reconnects with ``Last-Event-ID`` receives the
events it missed: only those its credential may see, on any replica of the database, within
the replay window, beyond which it is told to reload (safeboard.events, runs/live.py).
On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.sse import OpenStream

pytestmark = pytest.mark.anyio

PROJECT = "/api/v1/projects/mnist/events"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def replicas(
    make_settings: Callable[..., Settings], db_url: str
) -> AsyncIterator[tuple[World, World, str]]:
    """Replicas A and B of one database; olga owns mnist (alice a viewer) and secret."""
    a = build_world(make_settings, db_url)
    b = build_world(make_settings, db_url)
    a.user("olga")
    a.user("alice")
    olga = a.key("olga")
    client = a.client(Authorization=f"Bearer {olga}")
    for name in ("mnist", "secret"):
        assert (await client.post("/api/v1/projects", json={"name": name})).status_code == 201
    granted = await client.put("/api/v1/projects/mnist/grants/alice", json={"role": "viewer"})
    assert granted.status_code == 204, granted.text
    for world in (a, b):
        world.services.events.start()  # as the app's start does (PostgreSQL: LISTEN)
    yield a, b, olga
    for world in (a, b):
        world.services.events.stop()
    await a.close()
    await b.close()


async def _run(client: httpx.AsyncClient, project: str) -> str:
    made = await client.post(f"/api/v1/projects/{project}/runs", json={"name": "r"})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _log(client: httpx.AsyncClient, run_id: str, step: int) -> None:
    body = {
        "batch_id": f"b{step:08d}",
        "metrics": {
            "loss": {"steps": [step], "times": [1.7e9 + step], "values": [1.0 / (step + 1)]}
        },
    }
    sent = await client.post(f"/api/v1/runs/{run_id}/metrics", json=body)
    assert sent.status_code in (200, 201, 202), sent.text


def _steps(stream: OpenStream) -> list[int]:
    return [data["data"]["last_step"]["loss"] for kind, data in stream.events()
            if kind == "metrics"]  # fmt: skip


async def test_events_have_increasing_ids(replicas: tuple[World, World, str]) -> None:
    a, _, olga = replicas
    client = a.client(Authorization=f"Bearer {olga}")
    run_id = await _run(client, "mnist")
    stream = await OpenStream(a.app, a.base_url, PROJECT, _bearer(olga)).open()
    for step in range(3):
        await _log(client, run_id, step)
    assert await stream.wait(lambda: len(stream.events()) >= 3, 10)
    ids = [event_id for event_id, _ in stream.ids()]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    # Each its own; the run's creation may come too (on PostgreSQL its notice can reach the
    # stream after it opened: seen in CI, ids 1 to 4).
    assert len(set(ids)) == len(ids) >= 3
    assert "retry: " in stream.body
    await stream.close()


async def test_a_reconnect_replays_what_it_missed_on_another_replica(
    replicas: tuple[World, World, str],
) -> None:
    a, b, olga = replicas
    client = a.client(Authorization=f"Bearer {olga}")
    run_id = await _run(client, "mnist")
    first = await OpenStream(a.app, a.base_url, PROJECT, _bearer(olga)).open()
    await _log(client, run_id, 0)
    # Step 0's event: on PostgreSQL the run's creation can reach the stream first, late.
    assert await first.wait(lambda: _steps(first) == [0], 10)
    last_id = [event_id for event_id, kind in first.ids() if kind == "metrics"][-1]
    await first.close()
    for step in range(1, 5):  # missed: stored through A and B while no stream was open
        await _log(client if step % 2 else b.client(Authorization=f"Bearer {olga}"), run_id, step)

    again = await OpenStream(b.app, b.base_url, PROJECT,
                             {**_bearer(olga), "Last-Event-ID": str(last_id)}).open()  # fmt: skip
    assert await again.wait(lambda: len(again.events()) >= 4, 10)
    await _log(b.client(Authorization=f"Bearer {olga}"), run_id, 5)  # live, after the replay
    assert await again.wait(lambda: len(again.events()) >= 5, 10)
    assert not await again.wait(lambda: len(again.events()) > 5, 0.5)
    assert _steps(again) == [1, 2, 3, 4, 5]  # each once, in order
    ids = [event_id for event_id, _ in again.ids()]
    assert ids == sorted(ids)
    assert ids[0] is not None
    assert ids[0] > last_id
    await again.close()


async def test_a_replay_shows_only_what_the_credential_may_see(
    replicas: tuple[World, World, str],
) -> None:
    a, _, olga = replicas
    client = a.client(Authorization=f"Bearer {olga}")
    mnist, other, secret = (await _run(client, "mnist"), await _run(client, "mnist"),
                            await _run(client, "secret"))  # fmt: skip
    for step in range(3):
        await _log(client, mnist, step)
        await _log(client, other, step)
        await _log(client, secret, step)
    alice = _bearer(a.key("alice"))
    since = {"Last-Event-ID": "0"}
    # alice reads mnist only: its events, not secret's (nor may she open secret's stream).
    stream = await OpenStream(a.app, a.base_url, PROJECT, {**alice, **since}).open()
    assert await stream.wait(lambda: len(stream.events()) >= 8, 10)  # 2 created + 6 batches
    assert not await stream.wait(lambda: len(stream.events()) > 8, 0.5)
    assert {data["run_id"] for _, data in stream.events()} == {mnist, other}
    refused = await OpenStream(a.app, a.base_url, "/api/v1/projects/secret/events",
                               {**alice, **since}).open()  # fmt: skip
    assert refused.status == 404
    assert secret not in refused.body
    # One run's stream replays that run's events only.
    one = await OpenStream(a.app, a.base_url, f"/api/v1/runs/{mnist}/events",
                           {**alice, **since}).open()  # fmt: skip
    assert await one.wait(lambda: len(one.events()) >= 4, 10)
    assert not await one.wait(lambda: len(one.events()) > 4, 0.5)
    assert {data["run_id"] for _, data in one.events()} == {mnist}
    for opened in (stream, refused, one):
        await opened.close()


async def test_beyond_the_window_the_page_is_told_to_reload(
    replicas: tuple[World, World, str],
) -> None:
    a, _, olga = replicas
    bus = a.services.events
    client = a.client(Authorization=f"Bearer {olga}")
    old = datetime.now(UTC) - timedelta(seconds=bus.replay_seconds + 60)
    bus.clock = lambda: old  # these events are recorded as over ten minutes old
    run_id = await _run(client, "mnist")
    for step in range(5):
        await _log(client, run_id, step)
    # Too many missed: a reset, with the id to go on from.
    bus.replay_limit = 3
    stream = await OpenStream(a.app, a.base_url, PROJECT,
                              {**_bearer(olga), "Last-Event-ID": "0"}).open()  # fmt: skip
    assert await stream.wait(lambda: len(stream.events()) >= 1, 10)
    newest, kind = stream.ids()[0]
    assert kind == "reset"
    assert newest is not None
    await stream.close()
    # Too old: the old events are trimmed; a client that last saw the one before the
    # newest of them missed a trimmed one and is told to reload; one that saw the newest
    # missed nothing that is gone and catches up.
    bus.replay_limit = 1000
    bus.clock = lambda: datetime.now(UTC)
    witness = await OpenStream(a.app, a.base_url, PROJECT, _bearer(olga)).open()
    await _log(client, run_id, 5)
    await _log(client, run_id, 6)
    # Notices reach this replica's streams in commit order: once the witness has step 6,
    # a stream opened later can get none of them live (on PostgreSQL they could come after
    # it; the witness itself may get a late one of steps 0 to 4 first).
    assert await witness.wait(lambda: 6 in _steps(witness), 10)
    await witness.close()
    bus.trim()
    missed_one = {**_bearer(olga), "Last-Event-ID": str(newest - 1)}
    behind = await OpenStream(a.app, a.base_url, PROJECT, missed_one).open()
    assert await behind.wait(lambda: len(behind.events()) >= 1, 10)
    assert not await behind.wait(lambda: len(behind.events()) > 1, 0.3)
    assert [kind for _, kind in behind.ids()] == ["reset"]
    await behind.close()
    recent = await OpenStream(a.app, a.base_url, PROJECT,
                              {**_bearer(olga), "Last-Event-ID": str(newest)}).open()  # fmt: skip
    assert await recent.wait(lambda: len(recent.events()) >= 2, 10)
    assert not await recent.wait(lambda: len(recent.events()) > 2, 0.3)
    assert _steps(recent) == [5, 6]
    await recent.close()


async def test_a_bad_last_event_id_is_ignored(replicas: tuple[World, World, str]) -> None:
    a, _, olga = replicas
    for value in ("abc", "-1", "9" * 40, "١٢"):
        stream = await OpenStream(a.app, a.base_url, PROJECT,
                                  {**_bearer(olga), "Last-Event-ID": value}).open()  # fmt: skip
        assert stream.status == 200
        assert not await stream.wait(lambda s=stream: bool(s.events()), 0.2)
        await stream.close()


async def test_an_id_from_beyond_the_newest_is_a_reset(replicas: tuple[World, World, str]) -> None:
    a, _, olga = replicas
    stream = await OpenStream(a.app, a.base_url, PROJECT,
                              {**_bearer(olga), "Last-Event-ID": str(10**12)}).open()  # fmt: skip
    assert await stream.wait(lambda: len(stream.events()) >= 1, 10)
    assert stream.events()[0][0] == "reset"
    await stream.close()
