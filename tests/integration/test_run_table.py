"""A project's runs through their one read path (runs/table.py behind RunService.table),
on SQLite and PostgreSQL: ``GET /api/v1/projects/{p}/runs`` sorts by any column of the
dashboard's table (runs without a value last either way, ties by id), filters, pages with
keyset cursors, carries the config values and metric values asked for, and refuses a bad
sort key or cursor with a 400 naming the valid ones; the dashboard shows the same order."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}
# name: (config, tags, last val/acc); ids "00..", "11..", ...: ties break by id.
RUNS: dict[str, tuple[dict[str, Any], dict[str, str], float | None]] = {
    "r0": ({"opt": {"lr": 0.3}}, {"group": "a"}, 0.5),
    "r1": ({"opt": {"lr": 0.1}}, {}, None),
    "r2": ({"opt": {"name": "sgd"}}, {"group": "b"}, 0.9),
    "r3": ({"opt": {"lr": 0.1}}, {"group": "a"}, 0.7),
}
ORDERS = {  # (sort, descending) -> names
    ("created", True): ["r3", "r2", "r1", "r0"],
    ("created", False): ["r0", "r1", "r2", "r3"],
    ("name", True): ["r3", "r2", "r1", "r0"],
    ("status", False): ["r1", "r2", "r0", "r3"],  # finished, then running
    ("ended", True): ["r2", "r1", "r3", "r0"],  # r0 and r3 have not ended: last
    ("metrics.val/acc", True): ["r2", "r3", "r0", "r1"],
    ("metrics.val/acc", False): ["r0", "r3", "r2", "r1"],
    ("params.opt.lr", True): ["r0", "r3", "r1", "r2"],
    ("params.opt.lr", False): ["r1", "r3", "r0", "r2"],
    ("tags.group", False): ["r0", "r3", "r2", "r1"],
    ("tags.group", True): ["r2", "r3", "r0", "r1"],
}


def run_id(name: str) -> str:
    return name[1] * 32


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga", Role.MEMBER)
    yield built
    await built.close()


@pytest.fixture
async def olga(world: World) -> httpx.AsyncClient:
    client = world.client(Authorization=f"Bearer {world.key('olga')}")
    assert (await client.post("/api/v1/projects", json={"name": "p"})).status_code == 201
    for n, (name, (config, tags, acc)) in enumerate(RUNS.items()):
        body = {"id": run_id(name), "name": name, "config": config, "tags": tags}
        made = await client.post("/api/v1/projects/p/runs", json=body)
        assert made.status_code == 201, made.text
        if acc is not None:
            one = {"steps": [0], "times": [0.0], "values": [acc]}
            batch = {"batch_id": f"{n}" * 32, "metrics": {"val/acc": one}}
            sent = await client.post(f"/api/v1/runs/{run_id(name)}/metrics", json=batch)
            assert sent.status_code < 300, sent.text
    for name in ("r1", "r2"):  # in this order: r2 ended last
        ended = await client.patch(f"/api/v1/runs/{run_id(name)}", json={"status": "finished"})
        assert ended.status_code == 200, ended.text
    return client


async def walk(client: httpx.AsyncClient, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every run of the list, ``limit`` a page, following next_cursor."""
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        asked = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        answer = await client.get("/api/v1/projects/p/runs", params=asked)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["runs"]) <= limit
        found += page["runs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the pages did not end")


async def test_the_list_sorts_by_any_column_a_page_at_a_time(olga: httpx.AsyncClient) -> None:
    for (sort, descending), expected in ORDERS.items():
        order = "desc" if descending else "asc"
        for limit in (1, 3, 500):
            runs = await walk(olga, limit, sort=sort, order=order)
            assert [r["name"] for r in runs] == expected, (sort, order, limit)
    newest = await walk(olga, 2)  # no sort: newest first, as before
    assert [r["name"] for r in newest] == ORDERS["created", True]


async def test_infinite_values_page_through_like_any_other(olga: httpx.AsyncClient) -> None:
    """A diverged run's last value is Infinity: the cursor after it read back as "not one
    this page made" (400) and the list stopped there."""
    for n, (name, value) in enumerate([("r4", "Infinity"), ("r5", "-Infinity")], start=4):
        body = {"id": run_id(name), "name": name}
        assert (await olga.post("/api/v1/projects/p/runs", json=body)).status_code == 201
        one = {"steps": [0], "times": [0.0], "values": [value]}
        batch = {"batch_id": f"{n}" * 32, "metrics": {"val/acc": one}}
        sent = await olga.post(f"/api/v1/runs/{run_id(name)}/metrics", json=batch)
        assert sent.status_code < 300, sent.text
    expected = {
        "desc": ["r4", "r2", "r3", "r0", "r5", "r1"],
        "asc": ["r5", "r0", "r3", "r2", "r4", "r1"],
    }
    for order, names in expected.items():
        for limit in (1, 2):
            runs = await walk(olga, limit, sort="metrics.val/acc", order=order)
            assert [r["name"] for r in runs] == names, (order, limit)


async def test_a_nan_last_value_is_listed_as_nan_and_sorts_with_the_runs_without_one(
    world: World, olga: httpx.AsyncClient
) -> None:
    """A last value of NaN (stored as NULL) was left out of the run list's ``metrics``, as
    if the run had never logged the key; the dashboard's table and the run page showed an
    empty cell. Now it is "NaN", as the points API writes it, and infinities read back as
    themselves; in a sort by the metric a NaN comes last with the runs that have none."""
    logged = [("r4", "NaN"), ("r5", "Infinity"), ("r6", "-Infinity")]
    for n, (name, value) in enumerate(logged, start=4):
        body = {"id": run_id(name), "name": name}
        assert (await olga.post("/api/v1/projects/p/runs", json=body)).status_code == 201
        points = {"steps": [0, 1], "times": [0.0, 1.0], "values": [0.25, value]}
        batch = {"batch_id": f"{n}" * 32, "metrics": {"val/acc": points}}
        sent = await olga.post(f"/api/v1/runs/{run_id(name)}/metrics", json=batch)
        assert sent.status_code < 300, sent.text
    asked = await walk(olga, 500, sort="name", order="asc", metric="val/acc")
    assert [r["metrics"] for r in asked] == [
        {"val/acc": 0.5}, {}, {"val/acc": 0.9}, {"val/acc": 0.7},
        {"val/acc": "NaN"}, {"val/acc": "Infinity"}, {"val/acc": "-Infinity"},
    ]  # fmt: skip
    raw = await olga.get("/api/v1/projects/p/runs", params={"metric": "val/acc", "limit": 500})
    assert '"metrics":{"val/acc":"NaN"}' in raw.text.replace(" ", "")
    expected = {
        "desc": ["r5", "r2", "r3", "r0", "r6", "r4", "r1"],
        "asc": ["r6", "r0", "r3", "r2", "r5", "r1", "r4"],
    }
    for order, names in expected.items():
        for limit in (1, 2, 500):
            runs = await walk(olga, limit, sort="metrics.val/acc", order=order)
            assert [r["name"] for r in runs] == names, (order, limit)
            assert runs[names.index("r4")]["metrics"] == {"val/acc": "NaN"}
    world.user("root", Role.ADMIN)
    browser, _ = await world.signed_in("root")
    table = await browser.get("/projects/p?sort=metrics.val/acc&order=desc", headers=HTML)
    assert table.status_code == 200, table.text
    cells = re.findall(r'<td class="num">([^<]*)</td>', table.text)
    assert {"NaN", "Infinity", "-Infinity"} <= set(cells), cells
    run_page = await browser.get(f"/runs/{run_id('r4')}", headers=HTML)
    assert run_page.status_code == 200, run_page.text
    assert '<td class="num">NaN</td>' in run_page.text


async def test_rows_carry_the_values_asked_for(olga: httpx.AsyncClient) -> None:
    by_metric = await walk(olga, 2, sort="metrics.val/acc", order="desc")
    assert [r["metrics"] for r in by_metric] == [
        {"val/acc": 0.9},
        {"val/acc": 0.7},
        {"val/acc": 0.5},
        {},
    ]
    asked = await walk(olga, 2, sort="name", order="asc", metric="val/acc", config_key="opt.lr")
    assert [(r["config"], r["metrics"].get("val/acc")) for r in asked] == [
        ({"opt": {"lr": 0.3}}, 0.5), ({"opt": {"lr": 0.1}}, None), ({}, 0.9),
        ({"opt": {"lr": 0.1}}, 0.7),
    ]  # fmt: skip
    assert [r["tags"] for r in asked] == [spec[1] for spec in RUNS.values()]
    plain = await walk(olga, 10)
    assert all(r["metrics"] == {} and r["config"] == {} for r in plain)


async def test_a_filter_and_a_sort_together_with_a_count(olga: httpx.AsyncClient) -> None:
    params = {"filter": "params.opt.lr >= 0.1", "sort": "name", "order": "desc"}
    runs = await walk(olga, 2, **params)
    assert [r["name"] for r in runs] == ["r3", "r1", "r0"]
    counted = await olga.get("/api/v1/projects/p/runs", params={**params, "count": "true"})
    assert counted.json()["total"] == 3
    uncounted = await olga.get("/api/v1/projects/p/runs", params=params)
    assert uncounted.json()["total"] is None  # counting costs a pass: only when asked


async def test_bad_sorts_and_cursors_are_400s_naming_the_valid_ones(
    olga: httpx.AsyncClient,
) -> None:
    valid = "created, ended, name, status, params.<path>, tags.<key> or metrics.<key>"
    url = "/api/v1/projects/p/runs"
    for sort in ("colour", "params.", "metrics", "config.lr"):
        answer = await olga.get(url, params={"sort": sort})
        assert answer.status_code == 400, sort
        assert answer.json()["error"]["message"] == f"unknown sort key {sort!r}: use one of {valid}"
    quoted = await olga.get(url, params={"sort": "params.a'b"})
    assert quoted.status_code == 400
    assert "without quotes" in quoted.json()["error"]["message"]
    by_name = await olga.get(url, params={"sort": "name", "limit": 1})
    cursor = by_name.json()["next_cursor"]
    for params in ({"sort": "metrics.val/acc", "cursor": cursor}, {"cursor": "!!!"},
                   {"cursor": cursor}):  # fmt: skip
        answer = await olga.get(url, params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["message"].startswith("cursor: not one this page made")
    # A forged cursor holding a NUL: PostgreSQL's text cannot hold one (no 500 there).
    nul = base64.urlsafe_b64encode(json.dumps(["text", "a\x00", "0" * 32]).encode()).decode()
    forged = await olga.get(url, params={"sort": "name", "cursor": nul})
    assert forged.status_code in (200, 400), forged.text
    sideways = await olga.get(url, params={"order": "sideways"})
    assert sideways.status_code == 422
    long_key = await olga.get(url, params={"metric": "m" * 251})
    assert long_key.status_code == 400


async def test_the_dashboard_shows_the_order_of_the_api(
    world: World, olga: httpx.AsyncClient
) -> None:
    world.user("root", Role.ADMIN)
    browser, _ = await world.signed_in("root")
    for sort, descending in (("tags.group", False), ("params.opt.lr", True), ("ended", True)):
        order = "desc" if descending else "asc"
        page = await browser.get(f"/projects/p?sort={sort}&order={order}", headers=HTML)
        assert page.status_code == 200, page.text
        shown = re.findall(r'<tr data-run="([0-9a-f]{32})"', page.text)
        listed = await walk(olga, 500, sort=sort, order=order)
        assert shown == [r["id"] for r in listed], sort
        assert "4 shown of 4 runs" in page.text


async def test_a_sort_computes_each_value_once_and_the_default_order_reads_an_index(
    world: World, olga: httpx.AsyncClient
) -> None:
    """Issue 13 (10,000 runs sorted through the API): the newest-first list and the
    lookup of the newest run holding a param read the index on (project, created, id),
    not a sort of every run; a metric sort computes each run's value once (a CTE), not
    again for the NULLs-last case and a cursor's comparisons."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and "runs" in statement:
            statements.append(statement)

    engine = world.services.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        first = await olga.get("/api/v1/projects/p/runs", params={"limit": 1})
        cursor = first.json()["next_cursor"]
        await olga.get("/api/v1/projects/p/runs", params={"limit": 1, "cursor": cursor})
        await olga.get("/api/v1/projects/p/runs", params={"sort": "params.opt.lr", "limit": 1})
        by_metric = await olga.get(
            "/api/v1/projects/p/runs", params={"sort": "metrics.val/acc", "limit": 1}
        )
        await olga.get(
            "/api/v1/projects/p/runs",
            params={
                "sort": "metrics.val/acc",
                "limit": 1,
                "cursor": by_metric.json()["next_cursor"],
            },
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    metric_sorts = [s for s in statements if "metric_summaries" in s and "ORDER BY" in s]
    assert len(metric_sorts) == 2
    for statement in metric_sorts:  # once, in the CTE
        assert statement.count("FROM metric_summaries") == 1, statement
    if engine.dialect.name != "sqlite":
        return
    newest = [s for s in statements if "ORDER BY runs.created_at DESC" in s]
    assert len(newest) >= 3  # two pages and the param's sample
    with engine.connect() as conn:
        for statement in newest:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, _bind_params(statement)
            ).all()
            text = " | ".join(str(row[-1]) for row in plan)
            assert "ix_runs_project_created" in text, text
            assert "TEMP B-TREE" not in text, text


def _bind_params(statement: str) -> tuple[Any, ...]:
    """Placeholder values for EXPLAIN QUERY PLAN (the plan does not depend on them)."""
    return (1,) * statement.count("?")
