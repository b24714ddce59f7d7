"""Projects, runs and metrics over the API, on SQLite and PostgreSQL (S9, S17, R1, P2)."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from safeboard import wire
from safeboard.auth.permissions import Role, Scope
from safeboard.metrics import codec
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


def as_user(world: World, name: str, scope: Scope = Scope.ADMIN) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name, scope)}")


async def _project_with_run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post(
        "/api/v1/projects/mnist/runs",
        json={"name": "baseline", "config": {"lr": 0.01, "opt": {"name": "adam"}},
              "tags": {"model": "resnet"}},
    )  # fmt: skip
    assert run.status_code == 201, run.text
    return olga, run.json()["id"]


def batch(
    batch_id: str, key: str, steps: list[int], values: list[float | str]
) -> dict[str, object]:
    times = [1_700_000_000.0 + s for s in steps]
    return {
        "batch_id": batch_id,
        "metrics": {key: {"steps": steps, "times": times, "values": values}},
    }


async def test_run_lifecycle(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    got = (await olga.get(f"/api/v1/runs/{run_id}")).json()
    assert got["status"] == "running"
    assert got["config"]["opt"]["name"] == "adam"
    assert got["tags"] == {"model": "resnet"}
    done = await olga.patch(
        f"/api/v1/runs/{run_id}",
        json={"status": "finished", "config": {"epochs": 3}, "tags": {"model": None, "x": "1"}},
    )
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "finished"
    assert body["ended_at"] is not None
    assert body["config"] == {"lr": 0.01, "opt": {"name": "adam"}, "epochs": 3}
    assert body["tags"] == {"x": "1"}
    again = await olga.patch(f"/api/v1/runs/{run_id}", json={"status": "failed"})
    assert again.status_code == 409


async def test_projects_say_how_many_runs_they_hold_and_when_the_newest_started(
    world: World,
) -> None:
    olga, first = await _project_with_run(world)
    assert (await olga.post("/api/v1/projects", json={"name": "empty"})).status_code == 201
    second = (await olga.post("/api/v1/projects/mnist/runs", json={"name": "b"})).json()
    listed = {p["name"]: p for p in (await olga.get("/api/v1/projects")).json()}
    assert (listed["mnist"]["runs"], listed["empty"]["runs"]) == (2, 0)
    assert listed["empty"]["last_run_at"] is None
    newest = max(
        second["created_at"], (await olga.get(f"/api/v1/runs/{first}")).json()["created_at"]
    )
    assert listed["mnist"]["last_run_at"] == newest
    one = (await olga.get("/api/v1/projects/mnist")).json()
    assert (one["runs"], one["last_run_at"]) == (2, newest)
    made = (await olga.post("/api/v1/projects", json={"name": "fresh"})).json()
    assert (made["runs"], made["last_run_at"]) == (0, None)
    # A viewer sees the same counts; someone without a grant sees no project at all.
    await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    assert [
        (p["name"], p["runs"]) for p in (await as_user(world, "vic").get("/api/v1/projects")).json()
    ] == [("mnist", 2)]
    assert (await as_user(world, "eve").get("/api/v1/projects")).json() == []
    # A key bound to one project counts that project's runs and sees no other.
    empty_id = listed["empty"]["id"]
    bound = world.client(Authorization=f"Bearer {world.key('olga', project_id=empty_id)}")
    assert [(p["name"], p["runs"]) for p in (await bound.get("/api/v1/projects")).json()] == [
        ("empty", 0)
    ]
    assert (await bound.get("/api/v1/projects/mnist")).status_code == 404


async def test_creating_the_same_run_id_twice_returns_the_first(world: World) -> None:
    olga, _ = await _project_with_run(world)
    run_id = "ab" * 16
    first = await olga.post("/api/v1/projects/mnist/runs", json={"id": run_id, "name": "a"})
    second = await olga.post("/api/v1/projects/mnist/runs", json={"id": run_id, "name": "b"})
    assert first.status_code == second.status_code == 201
    assert second.json()["name"] == "a"


async def test_ingest_is_exactly_once_and_summarised(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    url = f"/api/v1/runs/{run_id}/metrics"
    first = await olga.post(url, json=batch("batch-0001", "loss", [0, 1, 2], [3.0, "NaN", 1.0]))
    assert first.json() == {"batch_id": "batch-0001", "stored": 3, "duplicate": False}
    retry = await olga.post(url, json=batch("batch-0001", "loss", [0, 1, 2], [3.0, "NaN", 1.0]))
    assert retry.json() == {"batch_id": "batch-0001", "stored": 0, "duplicate": True}
    more = await olga.post(url, json=batch("batch-0002", "loss", [3, 4], ["Infinity", 0.5]))
    assert more.json()["stored"] == 2
    points = (await olga.get(f"/api/v1/runs/{run_id}/points?metric=loss")).json()
    assert points["steps"] == [0, 1, 2, 3, 4]
    assert points["values"] == [3.0, "NaN", 1.0, "Infinity", 0.5]
    run = (await olga.get(f"/api/v1/runs/{run_id}")).json()
    (summary,) = run["metrics"]
    assert summary == {
        "key": "loss", "count": 5, "last_step": 4, "last_value": 0.5, "min": 0.5,
        "max": "Infinity",
    }  # fmt: skip


async def test_downsampled_history_keeps_extremes(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    steps = list(range(10_000))
    values: list[float | str] = [math.sin(s / 100) for s in steps]
    values[4321] = 99.0  # a spike that a naive average would hide
    values[8765] = -99.0
    for i in range(0, 10_000, 2500):
        response = await olga.post(
            f"/api/v1/runs/{run_id}/metrics",
            json=batch(f"b-{i:08d}", "val/loss", steps[i : i + 2500], values[i : i + 2500]),
        )
        assert response.status_code == 200
    base = f"/api/v1/runs/{run_id}/history?metric=val/loss"
    history = (await olga.get(f"{base}&buckets=100")).json()["metrics"]["val/loss"]
    # Buckets of 2**k steps aligned to multiples of their width (metrics/rollups.py):
    # 128 steps is the narrowest giving at most 100 over 0..9999.
    assert len(history["min"]) == 79
    assert history["last_step"][-1] == 9999
    assert max(history["max"]) == 99.0
    assert min(history["min"]) == -99.0
    window = (await olga.get(f"{base}&buckets=10&start=100&end=199")).json()["metrics"]
    assert window["val/loss"]["last_step"] == [*range(111, 192, 16), 199]  # 16 steps wide
    # Step bounds past the largest step a metric may hold are refused, not a 500 (a
    # 20-digit number typed into the dashboard's zoom form overflowed SQLite's integer).
    for path in (base, f"/api/v1/runs/{run_id}/points?metric=val/loss"):
        for query in ("end=100000000000000000000", f"start={2**62 + 1}", "start=-1"):
            refused = await olga.get(f"{path}&{query}")
            assert refused.status_code == 422, (path, query, refused.text)
        whole = await olga.get(f"{path}&start=9990&end={2**62}")
        assert whole.status_code == 200, whole.text


def _bad(batch_id: str = "batch-0001", key: str = "a", **column: object) -> dict[str, object]:
    good: dict[str, object] = {"steps": [1], "times": [1.0], "values": [1.0]}
    return {"batch_id": batch_id, "metrics": {key: good | column}}


@pytest.mark.parametrize(
    "body",
    [
        _bad(batch_id="short"),
        _bad(steps=[1, 2]),  # unequal lengths
        _bad(values=["1.0"]),  # a number in a string: no coercion
        _bad(steps=[-1]),
        _bad(times=["NaN"]),
        _bad(values=[True]),
        _bad(key="a\n"),
        _bad(key="../../../auth/sessions"),  # a browser would resolve it in the history URL
        _bad(key="train/./loss"),
        _bad(key=".."),
        {"batch_id": "batch-0001", "metrics": {}, "extra": 1},
    ],
)
async def test_bad_batches_are_refused_and_store_nothing(
    world: World, body: dict[str, object]
) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(f"/api/v1/runs/{run_id}/metrics", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert (await olga.get(f"/api/v1/runs/{run_id}")).json()["metrics"] == []


async def test_malformed_json_is_422_not_500(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=b'{"batch_id": ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422


def packed(batch_id: str, key: str, steps: list[int], values: list[float | str]) -> bytes:
    body = batch(batch_id, key, steps, values)
    return wire.pack(batch_id, body["metrics"])  # type: ignore[arg-type]


async def test_packed_batches_are_stored_exactly_once(world: World) -> None:
    """The SDK's binary columns: stored like the JSON form, NaN and infinities included."""
    olga, run_id = await _project_with_run(world)
    url = f"/api/v1/runs/{run_id}/metrics"
    headers = {"Content-Type": wire.MEDIA_TYPE}
    body = packed("batch-0001", "loss", [0, 1, 2], [3.0, "NaN", "-Infinity"])
    first = await olga.post(url, content=body, headers=headers)
    assert first.json() == {"batch_id": "batch-0001", "stored": 3, "duplicate": False}
    retry = await olga.post(url, content=body, headers=headers)
    assert retry.json()["duplicate"] is True
    points = (await olga.get(f"/api/v1/runs/{run_id}/points?metric=loss")).json()
    assert points["values"] == [3.0, "NaN", "-Infinity"]
    assert points["times"] == [1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0]


def _repacked(body: bytes, header: bytes) -> bytes:
    """``body`` with its header replaced (same columns)."""
    data = wire.split(body).data
    return struct.pack("<4sI", b"SBC1", len(header)) + header + bytes(data)


_GOOD = packed("batch-0001", "a", [1, 2], [1.0, 2.0])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "shorter"),
        (b"SBC2" + _GOOD[4:], "SBC1"),
        (_GOOD[:-1], "bytes of columns"),
        (_GOOD + b"\0" * 8, "bytes of columns"),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a",3]]}'), "bytes of columns"),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a",0]]}'), "bytes of columns"),
        (
            _repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["b",0],["a",2]]}'),
            "metrics.b: at least one point",
        ),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a",-1]]}'), "header.metrics"),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a","2"]]}'), "header.metrics"),
        (_repacked(_GOOD, b'{"batch_id":"x","metrics":[["a",2]]}'), "batch_id: 8 to 64"),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a",1],["a",1]]}'), "twice"),
        (_repacked(_GOOD, b'{"batch_id":"batch-0001","metrics":[["a\\n",2]]}'), "control"),
        (_repacked(_GOOD, b"not json"), "header"),
        (packed("batch-0001", "a", [-1, 2], [1.0, 2.0]), "steps"),
        (packed("batch-0001", "a", [1, 2**62 + 1], [1.0, 2.0]), "steps"),
        (
            wire.pack("batch-0001", {"a": {"steps": [1], "times": [math.nan], "values": [1.0]}}),
            "times",
        ),
    ],
)
async def test_bad_packed_batches_are_refused_and_store_nothing(
    world: World, body: bytes, problem: str
) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics", content=body, headers={"Content-Type": wire.MEDIA_TYPE}
    )
    assert response.status_code in (400, 422), response.text
    assert problem in response.json()["error"]["message"]
    assert (await olga.get(f"/api/v1/runs/{run_id}")).json()["metrics"] == []


def _compact(steps: list[int], values: list[float], key: str = "a") -> bytes:
    times = [1_700_000_000.0 + i for i in range(len(steps))]
    return wire.pack_compact("batch-0001", {key: (steps, times, values)})


_STRIDED = list(range(3, 3 + 2 * 20, 2))  # 20 steps of stride 2: the strided form
_SINGLES = [0.5 * i for i in range(20)]  # exact in float32: the float32 form


async def test_compact_batches_are_stored_exactly_once_bit_for_bit(world: World) -> None:
    """The compact body (SBC2) stores what the plain one does: strided steps, float32
    values, and columns it keeps plain (a NaN's payload, doubles, -0.0)."""
    olga, run_id = await _project_with_run(world)
    url = f"/api/v1/runs/{run_id}/metrics"
    headers = {"Content-Type": wire.COMPACT_MEDIA_TYPE}
    doubles = [0.1 * i for i in range(20)]
    odd = [-0.0, math.nan, math.inf, *range(17)]
    times = [1_700_000_000.25 + i for i in range(20)]
    columns = {
        "single": (_STRIDED, times, _SINGLES), "double": (_STRIDED, times, doubles),
        "odd": (list(range(20)), times, odd), "few": ([5, 9], times[:2], [1.5, 2.5]),
    }  # fmt: skip
    body = wire.pack_compact("batch-0001", columns)
    assert len(body) < len(wire.pack_arrays("batch-0001", columns))
    first = await olga.post(url, content=body, headers=headers)
    assert first.json() == {"batch_id": "batch-0001", "stored": 62, "duplicate": False}
    retry = await olga.post(url, content=body, headers=headers)
    assert retry.json()["duplicate"] is True
    for key, (steps, stamps, values) in columns.items():
        points = (await olga.get(f"/api/v1/runs/{run_id}/points?metric={key}")).json()
        assert points["steps"] == steps
        assert points["times"] == stamps
        assert points["values"] == [codec.json_float(v) for v in values]
    negative = (await olga.get(f"/api/v1/runs/{run_id}/points?metric=odd")).json()["values"][0]
    assert math.copysign(1.0, negative) == -1.0


def _with_column(body: bytes, offset: int, blob: bytes) -> bytes:
    """``body`` with its columns' bytes from ``offset`` replaced by ``blob``."""
    start = len(body) - len(wire.split(body).data)
    return body[: start + offset] + blob + body[start + offset + len(blob) :]


_C = _compact(_STRIDED, _SINGLES)  # times (160 bytes), steps (25), values (81), pad (6)


def _strided(first: int, stride: int, count: int) -> bytes:
    return b"\x01" + struct.pack("<qqq", first, stride, count)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (_compact(_STRIDED, _SINGLES)[:-1], "bytes of columns"),
        (_with_column(_C, 160, _strided(3, 2, 21)), "strided steps column"),
        (_with_column(_C, 160, _strided(3, 2, 2**40)), "strided steps column"),
        (_with_column(_C, 160, _strided(3, 0, 20)), "strided steps column"),
        (_with_column(_C, 160, _strided(-4, 2, 20)), "strided steps column"),
        (_with_column(_C, 160, _strided(2**62, 1, 20)), "strided steps column"),
        (_with_column(_C, 160, b"\x07"), "steps column"),
        (_with_column(_C, 185, b"\x07"), "values column"),
        (
            _compact(_STRIDED, _SINGLES).replace(b'"a",20,25,81', b'"a",20,25,80', 1),
            "values column",
        ),
        (
            _compact(_STRIDED, _SINGLES).replace(b'"a",20,25,81', b'"a",20,-1,81', 1),
            "header.metrics",
        ),
        (_compact(_STRIDED, _SINGLES).replace(b'"a",20,25,81', b'"a",20', 1), "header"),
        (wire.pack("batch-0001", {"a": {"steps": [1], "times": [1.0], "values": [1.0]}}), "SBC1"),
        (_compact([-1, 2], [1.0, 2.0]), "steps"),  # plain forms: the batch's own checks too
    ],
)
async def test_bad_compact_batches_are_refused_and_store_nothing(
    world: World, body: bytes, problem: str
) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=body,
        headers={"Content-Type": wire.COMPACT_MEDIA_TYPE},
    )
    assert response.status_code in (400, 422), response.text
    assert problem in response.json()["error"]["message"]
    assert (await olga.get(f"/api/v1/runs/{run_id}")).json()["metrics"] == []


async def test_a_compact_body_sent_as_plain_is_refused(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=_compact(_STRIDED, _SINGLES),
        headers={"Content-Type": wire.MEDIA_TYPE},
    )
    assert response.status_code in (400, 422)
    assert wire.COMPACT_MEDIA_TYPE in response.json()["error"]["message"]


async def test_other_media_types_get_415(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=b"batch_id=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert wire.MEDIA_TYPE in response.json()["error"]["message"]


async def test_a_project_says_the_readers_own_role_as_the_list_does(world: World) -> None:
    olga, _ = await _project_with_run(world)
    for i in range(30):  # other projects: the answer is about this one
        assert (await olga.post("/api/v1/projects", json={"name": f"other-{i}"})).status_code == 201
    await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    readers = {"olga": "owner", "vic": "viewer", "admin": None}  # an admin holds no grant
    for name, role in readers.items():
        reader = as_user(world, name)
        one = (await reader.get("/api/v1/projects/mnist")).json()
        listed = {p["name"]: p for p in (await reader.get("/api/v1/projects")).json()}
        assert one["role"] == role
        assert one == listed["mnist"]
    renamed = await olga.patch("/api/v1/projects/mnist", json={"name": "mnist-2"})
    assert renamed.json()["role"] == "owner"


async def test_grants_decide_who_reads_and_writes(world: World) -> None:
    olga, run_id = await _project_with_run(world)
    vic, eve = as_user(world, "vic"), as_user(world, "eve")
    assert (await vic.get(f"/api/v1/runs/{run_id}")).status_code == 404  # no grant: unseen
    assert (await vic.get("/api/v1/projects/mnist")).status_code == 404
    grant = await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    assert grant.status_code == 204
    assert (await vic.get(f"/api/v1/runs/{run_id}")).status_code == 200
    write = await vic.post(
        f"/api/v1/runs/{run_id}/metrics", json=batch("b-000001", "x", [1], [1.0])
    )
    assert write.status_code == 403
    assert (await vic.post("/api/v1/projects/mnist/runs", json={})).status_code == 403
    assert (
        await vic.put("/api/v1/projects/mnist/grants/eve", json={"role": "owner"})
    ).status_code == 403
    assert [p["name"] for p in (await vic.get("/api/v1/projects")).json()] == ["mnist"]
    assert (await eve.get("/api/v1/projects")).json() == []
    admin = as_user(world, "admin")
    assert (await admin.get(f"/api/v1/runs/{run_id}")).status_code == 200
    read_key = as_user(world, "olga", Scope.READ)
    refused = await read_key.post(
        f"/api/v1/runs/{run_id}/metrics", json=batch("b-000002", "x", [1], [1.0])
    )
    assert refused.status_code == 403


async def test_run_pages(world: World) -> None:
    olga, _ = await _project_with_run(world)
    for i in range(4):
        await olga.post("/api/v1/projects/mnist/runs", json={"name": f"r{i}"})
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await olga.get("/api/v1/projects/mnist/runs", params=params)).json()
        seen += [r["name"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r3", "r2", "r1", "r0", "baseline"]
    bad = await olga.get("/api/v1/projects/mnist/runs", params={"cursor": "!!"})
    assert bad.status_code == 400


async def test_run_search(world: World) -> None:
    olga, first = await _project_with_run(world)  # lr 0.01, model resnet
    second = await olga.post(
        "/api/v1/projects/mnist/runs",
        json={
            "name": "wide",
            "config": {"lr": 0.1, "opt": {"name": "sgd"}},
            "tags": {"model": "vit"},
        },
    )
    second_id = second.json()["id"]
    await olga.post(
        f"/api/v1/runs/{second_id}/metrics",
        json=batch("batch-0009", "val/loss", [1, 2], [0.9, 0.1]),
    )
    await olga.patch(f"/api/v1/runs/{second_id}", json={"status": "finished"})

    async def names(text: str) -> list[str]:
        response = await olga.get("/api/v1/projects/mnist/runs", params={"filter": text})
        assert response.status_code == 200, response.text
        return [r["name"] for r in response.json()["runs"]]

    assert await names("params.lr > 0.05") == ["wide"]
    assert await names('tags.model = "resnet"') == ["baseline"]
    assert await names('params.opt.name = "sgd" and status = finished') == ["wide"]
    assert await names('metrics."val/loss" < 0.2') == ["wide"]
    assert await names("not params.lr > 0.05") == ["baseline"]
    assert await names('name ~ "WID" or params.lr = 0.01') == ["wide", "baseline"]
    assert await names("") == ["wide", "baseline"]
    for bad, where in (("params.lr >", "column 12"), ("status = done", "status"),
                       ("params.lr > 1 and and", "column")):  # fmt: skip
        response = await olga.get("/api/v1/projects/mnist/runs", params={"filter": bad})
        assert response.status_code == 400, bad
        assert where in response.json()["error"]["message"]
    assert first


async def test_non_finite_config_is_refused(world: World) -> None:
    olga, _ = await _project_with_run(world)
    response = await olga.post(
        "/api/v1/projects/mnist/runs",
        content=b'{"config": {"lr": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
