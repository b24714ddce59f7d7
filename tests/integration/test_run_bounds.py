"""Bounds on what a run carries (S17; safeboard/documents.py), on SQLite and PostgreSQL:
refused with 422 before anything is stored, on creation and on every update; lists and
pages never read whole configs; rows stored beyond the bounds by an older server break no
list, page or API answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from safeboard.auth.permissions import Role
from safeboard.documents import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_NOTES_CHARS,
    MAX_STRING_CHARS,
    MAX_TAGS,
)
from safeboard.runs.models import RunRow
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}
_runs = cast(sa.Table, RunRow.__table__)


def deep(levels: int, leaf: object = 1) -> dict[str, Any]:
    """A document nested ``levels`` deep: the document itself is level 1."""
    document: Any = leaf
    for _ in range(levels):
        document = {"a": document}
    return cast(dict[str, Any], document)


def deep_text(levels: int) -> str:
    """The JSON of deep(levels), made without recursion (json.dumps stops near 1,000)."""
    return '{"a":' * levels + "1" + "}" * levels


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga", Role.ADMIN)
    yield built
    await built.close()


@pytest.fixture
async def olga(world: World) -> httpx.AsyncClient:
    client = world.client(Authorization=f"Bearer {world.key('olga')}")
    assert (await client.post("/api/v1/projects", json={"name": "p"})).status_code == 201
    return client


async def names(client: httpx.AsyncClient) -> list[str]:
    answer = await client.get("/api/v1/projects/p/runs")
    assert answer.status_code == 200, answer.text
    return [run["name"] for run in answer.json()["runs"]]


BEYOND: list[tuple[str, dict[str, Any], str]] = [
    ("too deep", {"config": deep(MAX_DEPTH + 1)}, "nested deeper than 32"),
    ("256 levels", {"config": deep(256)}, "nested deeper than 32"),
    ("deep in a list", {"config": {"l": [[[[deep(MAX_DEPTH - 4)]]]]}}, "nested deeper"),
    ("system too deep", {"system": deep(MAX_DEPTH + 1)}, "system.a"),
    ("long string", {"config": {"s": "x" * (MAX_STRING_CHARS + 1)}}, "config.s: a string"),
    ("long key", {"config": {"k" * (MAX_KEY_CHARS + 1): 1}}, "keys are strings of at most"),
    ("many keys", {"config": {f"k{i}": i for i in range(MAX_KEYS + 1)}}, "more than 10000"),
    ("too large", {"config": {f"s{i}": "é" * 60_000 for i in range(3)}}, "bytes as JSON"),
    ("many tags", {"tags": {f"t{i}": "" for i in range(MAX_TAGS + 1)}}, "tags"),
    ("long tag value", {"tags": {"t": "v" * 501}}, "tags.t: a value longer than 500"),
    ("long tags", {"tags": {f"t{i:02d}": "v" * 98 for i in range(100)}}, "10100 characters"),
    ("long notes", {"notes": "n" * (MAX_NOTES_CHARS + 1)}, "notes"),
]


async def test_runs_beyond_the_bounds_are_refused_before_anything_is_stored(
    olga: httpx.AsyncClient,
) -> None:
    for what, body, message in BEYOND:
        answer = await olga.post("/api/v1/projects/p/runs", json={"name": "x", **body})
        assert answer.status_code == 422, what
        assert message in answer.json()["error"]["message"], (what, answer.text)
    assert await names(olga) == []
    # At the bounds: accepted, listed, and the run answers with all of it.
    edge = {"deep": deep(MAX_DEPTH - 1), "s": "x" * MAX_STRING_CHARS, "k" * MAX_KEY_CHARS: 1}
    made = await olga.post(
        "/api/v1/projects/p/runs",
        json={"name": "edge", "config": edge, "tags": {f"t{i:02d}": "v" * 97 for i in range(100)}},
    )
    assert made.status_code == 201, made.text
    assert await names(olga) == ["edge"]
    assert (await olga.get(f"/api/v1/runs/{made.json()['id']}")).json()["config"] == edge


async def test_updates_beyond_the_bounds_are_refused_and_change_nothing(
    olga: httpx.AsyncClient,
) -> None:
    made = await olga.post("/api/v1/projects/p/runs", json={"name": "r", "tags": {"a": "1"}})
    url = f"/api/v1/runs/{made.json()['id']}"
    half = MAX_DOCUMENT_BYTES // 2 // MAX_STRING_CHARS  # strings filling half the bound
    first = {f"a{i}": "x" * MAX_STRING_CHARS for i in range(half)}
    assert (await olga.patch(url, json={"config": first})).status_code == 200
    second = {f"b{i}": "x" * MAX_STRING_CHARS for i in range(half)}  # alone within bounds
    refused = [
        ({"config": second}, "bytes as JSON"),  # but not merged with the first
        ({"config": deep(MAX_DEPTH + 1)}, "nested deeper"),
        ({"config": {"n": "y" * (MAX_STRING_CHARS + 1)}}, "a string longer"),
        ({"tags": {f"t{i}": "" for i in range(MAX_TAGS)}}, "more than 100 tags"),  # +1: 101
        ({"tags": {"a": "v" * 501}}, "a value longer than 500"),
        ({"notes": "n" * (MAX_NOTES_CHARS + 1)}, "notes"),
        ({"notes": "fine", "config": deep(40)}, "nested deeper"),  # nothing of it is stored
    ]
    for body, message in refused:
        answer = await olga.patch(url, json=body)
        assert answer.status_code == 422, body.keys()
        assert message in answer.json()["error"]["message"], answer.text
    run = (await olga.get(url)).json()
    assert run["config"] == first
    assert run["tags"] == {"a": "1"}
    assert run["notes"] == ""
    # Removing a tag makes room for another; 100 tags is the bound, not 99.
    room = {"a": None} | {f"t{i}": "" for i in range(MAX_TAGS)}
    assert (await olga.patch(url, json={"tags": room})).status_code == 200
    assert len((await olga.get(url)).json()["tags"]) == MAX_TAGS


@contextmanager
def result_columns(world: World) -> Iterator[list[set[str]]]:
    """The names of the columns of every result the database sends while inside."""
    seen: list[set[str]] = []
    engine = world.services.engine

    def record(_conn: Any, cursor: Any, *_: Any) -> None:
        if cursor.description:
            seen.append({column[0] for column in cursor.description})

    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)


async def test_lists_and_pages_never_read_whole_configs(
    world: World, olga: httpx.AsyncClient
) -> None:
    config = {"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}, "prompt": "x" * 5000}
    for i in range(3):
        made = await olga.post(
            "/api/v1/projects/p/runs",
            json={"name": f"r{i}", "config": config | {"seed": i}, "system": {"host": "h"}},
        )
        assert made.status_code == 201
    run_id = made.json()["id"]
    browser, _ = await world.signed_in("olga")
    asked = ["lr", "opt.name", "prompt", "missing", "opt"]
    with result_columns(world) as seen:
        listed = await olga.get("/api/v1/projects/p/runs", params={"config_key": asked})
        plain = await olga.get("/api/v1/projects/p/runs")
        for path in ("/projects/p", "/projects/p?sort=params.lr&col=params.opt.name&col=tags.x"):
            assert (await browser.get(path, headers=HTML)).status_code == 200, path
    whole = {"params", "system", "notes"}
    assert seen
    assert all(not columns & whole for columns in seen), seen
    assert listed.status_code == 200, listed.text
    newest = listed.json()["runs"][0]
    opt = {"name": "adam", "betas": [0.9, 0.99]}
    assert newest["config"] == {"lr": 0.1, "opt": opt}
    assert newest["omitted"] == ["prompt"]  # 5,002 characters of JSON: read it from the run
    assert set(newest) == {"id", "project", "name", "status", "created_at", "ended_at",
                           "tags", "config", "omitted", "metrics"}  # fmt: skip
    assert newest["metrics"] == {}  # only the metrics asked for (none here)
    assert [r["config"] for r in plain.json()["runs"]] == [{}, {}, {}]
    # The run itself still answers with everything (and does read the documents).
    with result_columns(world) as seen:
        run = (await olga.get(f"/api/v1/runs/{run_id}")).json()
    assert any(columns & whole for columns in seen)
    assert run["config"]["prompt"] == "x" * 5000
    assert run["omitted"] == []
    for bad, status in (('a"b', 400), ("a..b", 400), ("x" * 301, 400)):
        answer = await olga.get("/api/v1/projects/p/runs", params={"config_key": bad})
        assert answer.status_code == status, bad
    many = await olga.get("/api/v1/projects/p/runs", params={"config_key": ["k"] * 21})
    assert many.status_code == 422


def insert_raw(world: World, name: str, params: str, system: str = "{}") -> str:
    """A run row written as an older server may have written it: any JSON text at all."""
    engine = world.services.engine
    run_id = f"{len(name):02d}{name.encode().hex()}".ljust(32, "0")[:32]

    def raw(text: str) -> sa.ColumnElement[Any]:
        value = sa.bindparam(None, text, sa.Text())
        if engine.dialect.name == "postgresql":
            return sa.cast(value, JSONB)
        return sa.type_coerce(value, sa.Text())

    with engine.begin() as conn:
        project_id = conn.execute(sa.text("SELECT id FROM projects WHERE name = 'p'")).scalar()
        conn.execute(
            sa.insert(_runs).values(
                id=run_id,
                project_id=project_id,
                name=name,
                status="running",
                created_at=datetime.now(UTC),
                params=raw(params),
                system=raw(system),
                notes="",
            )
        )
    return run_id


async def test_rows_stored_beyond_the_bounds_break_no_list_page_or_answer(
    world: World, olga: httpx.AsyncClient
) -> None:
    fine = (
        await olga.post("/api/v1/projects/p/runs", json={"name": "fine", "config": {"lr": 0.1}})
    ).json()["id"]
    old = {
        "deep256": insert_raw(world, "deep256", json.dumps(deep(256)), json.dumps(deep(300))),
        "deep900": insert_raw(world, "deep900", deep_text(900)),
        "huge": insert_raw(world, "huge", json.dumps({"lr": 0.2, "blob": "x" * (3 << 20)})),
        "keys": insert_raw(world, "keys", json.dumps({f"k{i}": i for i in range(30_000)})),
    }
    browser, _ = await world.signed_in("olga")
    listed = await olga.get("/api/v1/projects/p/runs", params={"config_key": ["a", "lr"]})
    assert listed.status_code == 200, listed.text
    by_name = {run["name"]: run for run in listed.json()["runs"]}
    assert by_name["deep256"]["omitted"] == ["a"]  # 255 levels: too long for a list
    assert by_name["huge"]["config"] == {"lr": 0.2}
    filtered = await olga.get("/api/v1/projects/p/runs", params={"filter": "params.lr > 0.15"})
    assert [run["name"] for run in filtered.json()["runs"]] == ["huge"]
    pages = [
        "/projects/p",
        "/projects/p?sort=params.lr",
        "/projects/p?col=params.a&col=params.blob&col=params.k1",
        "/compare?" + "&".join(f"run={run_id}" for run_id in [fine, *old.values()]),
    ]
    for path in pages:
        answer = await browser.get(path, headers=HTML)
        assert answer.status_code == 200, path
    table = (await browser.get("/projects/p?col=params.blob", headers=HTML)).text
    assert "(too long to show)" in table
    for name, run_id in old.items():
        api = await olga.get(f"/api/v1/runs/{run_id}")
        assert api.status_code == 200, name
        body = api.json()
        assert body["config"] == {}
        assert body["omitted"] == (["config", "system"] if name == "deep256" else ["config"])
        page = await browser.get(f"/runs/{run_id}", headers=HTML)
        assert page.status_code == 200, name
        assert 'data-testid="params-withheld"' in page.text
        # Tags, notes and the status still change; the config cannot grow further.
        tagged = await olga.patch(f"/api/v1/runs/{run_id}", json={"tags": {"old": "1"}})
        assert tagged.status_code == 200, tagged.text
        grown = await olga.patch(f"/api/v1/runs/{run_id}", json={"config": {"x": 1}})
        assert grown.status_code == 422
        assert "stored config is beyond the bounds" in grown.json()["error"]["message"]
        done = await olga.patch(f"/api/v1/runs/{run_id}", json={"status": "finished"})
        assert done.status_code == 200
    assert (await olga.get(f"/api/v1/runs/{fine}")).json()["omitted"] == []
