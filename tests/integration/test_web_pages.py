"""The dashboard's pages, rendered by the real app on SQLite and PostgreSQL: who may see
which page, the runs table (sort, filter, keyset pages, columns), inert user text, the
compare and admin pages, and HTML errors instead of 5xx or JSON for a browser."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import httpx
import pytest

from safeboard.auth.permissions import Permission, ProjectRole, Role
from safeboard.auth.principal import Principal
from safeboard.metrics.codec import from_wire
from safeboard.settings import Settings
from safeboard.web import routes as web_routes
from safeboard.web.assets import asset
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
RUNS = 120
PAGES = ["/account", "/admin/users", "/admin/grants", "/admin/audit", "/admin/sessions",
         "/compare", "/projects/p", "/runs/" + "0" * 32]  # fmt: skip


def principal(world: World, name: str) -> Principal:
    from safeboard.cli.local import Local

    return Local(world.services).principal(name)


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


def seed(world: World, project: str = "p", runs: int = RUNS) -> list[str]:
    """Runs with lr = i / 1000 (every seventh without lr) and a loss metric of 1 / (i + 1)."""
    admin = principal(world, "admin")
    world.services.projects.create(admin, project, "")
    ids = []
    for i in range(runs):
        params = {"layers": [64, 32]} if i % 7 == 0 else {"lr": i / 1000, "layers": [64, 32]}
        params["opt"] = {"name": ["sgd", "adam", "adamw"][i % 3]}
        tags = {"group": f"g{i % 4}"} if i % 5 else {}
        run = world.services.runs.create(
            admin, project, name=f"run-{i:03d}", params=params, tags=tags
        )
        loss = 1 / (i + 1)
        world.services.metrics.ingest(
            admin,
            run.id,
            secrets.token_hex(8),
            {"loss": from_wire([0, 1], [0.0, 1.0], [2.0, loss])},
        )
        ids.append(run.id)
    return ids


def run_names(page: str) -> list[str]:
    return [
        unescape(n)
        for n in re.findall(r'<th scope="row"><a href="/runs/[0-9a-f]+">([^<]*)</a>', page)
    ]


def next_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return unescape(found.group(1)) if found else None


async def walk(client: httpx.AsyncClient, url: str) -> list[str]:
    """Every run name in order, following "Next page" links to the end."""
    names: list[str] = []
    next_url: str | None = url
    while next_url:
        answer = await client.get(next_url, headers=HTML)
        assert answer.status_code == 200, answer.text
        names += run_names(answer.text)
        next_url = next_link(answer.text)
    return names


async def test_a_browser_without_a_session_is_sent_to_sign_in_and_api_clients_get_401(
    world: World,
) -> None:
    client = world.client()
    for path in PAGES:
        browser = await client.get(f"{path}?x=1", headers=HTML)
        assert browser.status_code == 303, path
        assert browser.headers["location"] == f"/login?next={path.replace('/', '%2F')}%3Fx%3D1"
        api = await client.get(path)
        assert api.status_code == 401, path
        assert api.json()["error"]["code"] == "unauthenticated"
    # The home page is a shell with no data: public, and its script asks who is there.
    home = await client.get("/", headers=HTML)
    assert home.status_code == 200
    assert 'data-testid="who"></span>' in home.text
    assert asset("home.js") in home.text


async def test_members_get_an_html_403_on_admin_pages_and_404_for_other_projects(
    world: World,
) -> None:
    seed(world, runs=1)
    alice, _ = await world.signed_in("alice")
    for path in ("/admin/users", "/admin/grants", "/admin/audit", "/admin/sessions"):
        answer = await alice.get(path, headers=HTML)
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "<h1>Not allowed</h1>" in answer.text
    hidden = await alice.get("/projects/p", headers=HTML)
    assert hidden.status_code == 404
    assert "no such project" in hidden.text
    assert (await alice.get("/projects/p")).json()["error"]["code"] == "not_found"
    account = await alice.get("/account", headers=HTML)
    assert account.status_code == 200
    assert "Signed in as alice (member)" in account.text
    assert "/admin/users" not in account.text  # no admin links for members


async def test_the_runs_table_pages_through_every_run_once_in_any_sort_order(world: World) -> None:
    ids = seed(world)
    admin, _ = await world.signed_in("admin")

    first = await admin.get("/projects/p", headers=HTML)
    assert first.status_code == 200
    assert f"50 shown of {RUNS} runs" in first.text
    assert run_names(first.text)[:2] == ["run-119", "run-118"]  # newest first
    newest = await walk(admin, "/projects/p")
    assert newest == [f"run-{i:03d}" for i in reversed(range(RUNS))]

    by_lr = await walk(admin, "/projects/p?sort=params.lr&order=asc")
    with_lr = [f"run-{i:03d}" for i in range(RUNS) if i % 7]
    without = sorted((f"run-{i:03d}" for i in range(RUNS) if i % 7 == 0), reverse=False)
    assert by_lr[: len(with_lr)] == with_lr
    assert sorted(by_lr[len(with_lr) :]) == without  # runs without lr come last
    assert len(by_lr) == len(ids)

    by_loss = await walk(admin, "/projects/p?sort=metrics.loss")  # biggest loss first
    assert by_loss == [f"run-{i:03d}" for i in range(RUNS)]
    by_name = await walk(admin, "/projects/p?sort=name&order=asc")
    assert by_name == sorted(by_name)

    # Text values (a nested param, a tag): every run once, in order, runs without last.
    def key(name: str, what: str) -> str:
        i = int(name.split("-")[1])
        return ["sgd", "adam", "adamw"][i % 3] if what == "opt" else f"g{i % 4}" if i % 5 else ""

    by_opt = await walk(admin, "/projects/p?sort=params.opt.name")
    assert sorted(by_opt) == sorted(newest)
    assert [key(n, "opt") for n in by_opt] == sorted((key(n, "opt") for n in by_opt), reverse=True)
    by_group = await walk(admin, "/projects/p?sort=tags.group&order=asc")
    assert sorted(by_group) == sorted(newest)
    groups = [key(n, "group") for n in by_group]
    tagged = [g for g in groups if g]
    assert groups == tagged + [""] * (len(groups) - len(tagged))
    assert tagged == sorted(tagged)

    filtered = await admin.get("/projects/p?filter=params.lr+>=+0.1", headers=HTML)
    expected = [f"run-{i:03d}" for i in reversed(range(100, RUNS)) if i % 7]
    assert run_names(filtered.text) == expected
    assert f"{len(expected)} shown of {len(expected)} runs" in filtered.text


async def test_columns_are_picked_in_the_url_and_bad_input_is_a_400_page(world: World) -> None:
    seed(world, runs=3)
    admin, _ = await world.signed_in("admin")
    default = (await admin.get("/projects/p", headers=HTML)).text
    assert 'title="Sort by metrics.loss"' in default
    assert 'title="Sort by params.lr"' in default
    chosen = (await admin.get("/projects/p?col=params.layers", headers=HTML)).text
    assert 'title="Sort by params.layers"' in chosen
    assert 'title="Sort by metrics.loss"' not in chosen
    assert "<td>[64, 32]</td>" in chosen

    quick = re.search(r"Show: (.*?)</p>", default)
    assert quick is not None
    links = re.findall(r'href="([^"]+)"', quick.group(1))
    assert len(links) == 4
    for link in links:  # every quick filter is one the language takes
        answer = await admin.get(unescape(link), headers=HTML)
        assert answer.status_code == 200, link
        assert 'id="filter-error"' not in answer.text
    for query, message in [
        ("filter=params.lr+>", "expected a value after"),
        ("sort=password", "unknown sort key 'password': use one of created, ended, name"),
        ("cursor=!!!", "cursor: not one this page made"),
        ("sort=params.a%27b", "without quotes"),
    ]:
        answer = await admin.get(f"/projects/p?{query}", headers=HTML)
        assert answer.status_code == 400, query
        assert message in unescape(answer.text), query
        assert 'role="alert"' in answer.text
    for query in ("order=sideways", "filter=" + "x" * 2001, "col=" + "&col=".join("ab" * 41)):
        answer = await admin.get(f"/projects/p?{query}", headers=HTML)
        assert answer.status_code == 400, query
        assert "<h1>Bad request</h1>" in answer.text
    assert (await admin.get("/projects/p?order=sideways")).json()["error"]["code"] == (
        "invalid_request"
    )


async def test_text_from_runs_renders_inert_on_every_page(world: World) -> None:
    admin_principal = principal(world, "admin")
    world.services.projects.create(admin_principal, "p", "")
    runs = [
        world.services.runs.create(
            admin_principal,
            "p",
            name=EVIL[:200],
            params={EVIL: EVIL, "lr": 0.1},
            tags={"model": EVIL},
            notes=EVIL,
        ),
        world.services.runs.create(admin_principal, "p", name="plain", params={"lr": 0.2}),
    ]
    admin, _ = await world.signed_in("admin")
    pages = [
        f"/runs/{runs[0].id}",
        "/projects/p?col=tags.model&col=params.lr",
        f"/compare?run={runs[0].id}&run={runs[1].id}&all=1",
    ]
    for path in pages:
        answer = await admin.get(path, headers=HTML)
        assert answer.status_code == 200, path
        assert "<script>alert" not in answer.text, path
        assert "<img src=x" not in answer.text, path
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in answer.text, path
        # Only our own module scripts, no inline script and no style attribute anywhere.
        scripts = re.findall(r"<script[^>]*>", answer.text)
        assert all(re.fullmatch(r'<script type="module" src="/static/[0-9a-f]{16}/[a-z]+\.js">', s)
                   for s in scripts), scripts  # fmt: skip
        assert " style=" not in answer.text
        assert re.search(r"\son[a-z]+=", answer.text.replace("onerror=alert", "")) is None


async def test_compare_shows_only_params_that_differ(world: World) -> None:
    ids = seed(world, runs=3)
    admin, _ = await world.signed_in("admin")
    page = (await admin.get(f"/compare?run={ids[1]}&run={ids[2]}", headers=HTML)).text
    diff = page.split('data-testid="param-diff"')[1].split("</table>")[0]
    assert '<th scope="row">lr</th><td>0.001</td><td>0.002</td>' in diff
    assert "layers" not in diff
    assert 'data-counts="{&quot;loss&quot;: 2}"' in page
    every = (await admin.get(f"/compare?run={ids[1]}&run={ids[2]}&all=1", headers=HTML)).text
    assert "layers" in every.split('data-testid="param-diff"')[1].split("</table>")[0]
    lonely = (await admin.get(f"/compare?run={ids[1]}", headers=HTML)).text
    assert 'data-testid="compare-empty"' in lonely
    missing = await admin.get(f"/compare?run={ids[1]}&run={'f' * 32}", headers=HTML)
    assert missing.status_code == 404
    assert "no such run" in missing.text


async def test_run_page_without_the_chart_library_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = seed(world, runs=2)
    admin, _ = await world.signed_in("admin")
    with_charts = (await admin.get(f"/runs/{ids[0]}", headers=HTML)).text
    assert 'data-testid="chart"' in with_charts
    assert asset("vendor/uPlot.min.css") in with_charts
    monkeypatch.setattr(web_routes, "CHART_LIBRARY", tmp_path / "absent.js")
    for path in (f"/runs/{ids[0]}", f"/compare?run={ids[0]}&run={ids[1]}"):
        answer = await admin.get(path, headers=HTML)
        assert answer.status_code == 200
        assert 'data-testid="charts-missing"' in answer.text
        assert "python3 -m pip install ." in answer.text
    assert (await admin.get(f"/runs/{'a' * 32}", headers=HTML)).status_code == 404


async def test_the_audit_page_filters_and_pages_newest_first(world: World) -> None:
    admin, _ = await world.signed_in("admin")
    for _ in range(3):
        await world.signed_in("alice")
    everything = (await admin.get("/admin/audit", headers=HTML)).text
    ids = [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', everything)]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) >= 6
    logins = (await admin.get("/admin/audit?action=login.ok&actor=alice", headers=HTML)).text
    rows = re.findall(r"<tr><td class=\"num\">\d+</td>.*?</tr>", logins)
    assert len(rows) == 3
    assert all("login.ok" in r and "alice" in r for r in rows)
    before = (await admin.get(f"/admin/audit?before={ids[1]}", headers=HTML)).text
    assert re.findall(r'<tr><td class="num">(\d+)</td>', before)[0] == str(ids[2])
    since = (await admin.get("/admin/audit?since=2999-01-01T00:00", headers=HTML)).text
    assert "No entry matches." in since
    # A zone, when given, counts: an hour ago, written in UTC+05:00, reads "4 hours ahead".
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    zoned = hour_ago.astimezone(timezone(timedelta(hours=5))).isoformat(timespec="minutes")
    recent = await admin.get("/admin/audit", params={"since": zoned}, headers=HTML)
    assert len(re.findall(r'<tr><td class="num">', recent.text)) == len(ids)
    bad = await admin.get("/admin/audit?since=yesterday", headers=HTML)
    assert bad.status_code == 400
    assert "since: a date and time" in bad.text
    for edge in ("0001-01-01T00:00+01:00", "9999-12-31T23:59-05:00"):  # were 500s
        past_the_calendar = await admin.get("/admin/audit", params={"since": edge}, headers=HTML)
        assert past_the_calendar.status_code == 400
    assert (await admin.get("/admin/audit?actor=%25", headers=HTML)).status_code == 200


def crafted(value: object) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_forged_cursors_are_400s_in_every_sort_order(world: World) -> None:
    seed(world, runs=3)
    admin, _ = await world.signed_in("admin")
    forged = [
        crafted(["text", "abc", "x"]),
        crafted(["number", 1.5, "x"]),
        crafted(["time", "2026-01-01T00:00:00", "x"]),  # no zone
        crafted(["time", "yesterday", "x"]),
        crafted(["number", "NaN", "x"]),
        crafted(["number", 1e400, "x"]),
        crafted(["other", 1, "x"]),
        crafted([["text"], 1, "x"]),
        crafted({"a": 1}),
        crafted(["text", "a"]),
        "%%%",
        # Found by review: each of these was a 500.
        base64.urlsafe_b64encode(b'["number", 1' + b"0" * 400 + b', "x"]').decode(),
        crafted(["time", "0001-01-01T00:00+01:00", "0" * 32]),
        crafted(["time", "9999-12-31T23:59:59-05:00", "0" * 32]),
        base64.urlsafe_b64encode(b'["text", "\\ud800", "' + b"0" * 32 + b'"]').decode(),
        base64.urlsafe_b64encode(b'["null", null, "\\ud800"]').decode(),
        crafted(["null", None, "not-a-run-id"]),
    ]
    for sort in ("created", "name", "metrics.loss", "params.lr", "params.layers", "tags.x"):
        for cursor in forged:
            answer = await admin.get(
                "/projects/p", params={"sort": sort, "cursor": cursor}, headers=HTML
            )
            assert answer.status_code in (200, 400), (sort, cursor, answer.status_code)
    # A cursor of the right kind works in each order (the "number" one above for loss).
    good = await admin.get(
        "/projects/p", params={"sort": "metrics.loss", "cursor": crafted(["number", 0.7, "0" * 32])}
    )
    assert good.status_code == 200


async def test_only_editors_get_the_notes_and_tags_forms(world: World) -> None:
    ids = seed(world, runs=1)
    world.user("bob")
    admin = principal(world, "admin")
    project = world.services.projects
    with world.services.engine.connect() as conn:
        from safeboard.projects.access import project_by_name

        project_id = project_by_name(conn, admin, "p", Permission.PROJECTS_READ).id
    project.set_grant(admin, project_id, "alice", ProjectRole.VIEWER)
    project.set_grant(admin, project_id, "bob", ProjectRole.EDITOR)
    alice, _ = await world.signed_in("alice")
    bob, _ = await world.signed_in("bob")
    seen = (await alice.get(f"/runs/{ids[0]}", headers=HTML)).text
    assert 'id="notes-form"' not in seen
    assert 'id="tag-form"' not in seen
    edited = (await bob.get(f"/runs/{ids[0]}", headers=HTML)).text
    assert 'id="notes-form"' in edited
    assert 'id="tag-form"' in edited


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


async def _empty_project_pages(world: World) -> tuple[str, str, str]:
    """The empty project's page for its admin and for a member viewer, and the home page."""
    admin = principal(world, "admin")
    project = world.services.projects.create(admin, "empty", "")
    world.services.projects.set_grant(admin, project.id, "alice", ProjectRole.VIEWER)
    admin_client, _ = await world.signed_in("admin")
    alice, _ = await world.signed_in("alice")
    as_admin = await admin_client.get("/projects/empty", headers=HTML)
    as_alice = await alice.get("/projects/empty", headers=HTML)
    home = await alice.get("/", headers=HTML)
    for answer in (as_admin, as_alice, home):
        assert answer.status_code == 200
    return as_admin.text, as_alice.text, home.text


async def test_a_teammates_empty_state_explains_safeboard_login(world: World) -> None:
    as_admin, as_alice, home = await _empty_project_pages(world)
    login = f"safeboard login {world.base_url}"  # the address the browser uses
    for html in (as_admin, as_alice, home):
        assert login in _text(html)
        assert "fingerprint" in _text(html)
        assert 'safeboard.init(project="' in _text(html)
    # A teammate is not on the server's machine: no "no configuration is needed" for her.
    assert 'data-testid="local-hint"' not in as_alice
    assert "no configuration" not in as_alice
    assert 'data-testid="local-hint"' in as_admin
    # The home page does not know who reads it: that part waits for the script (admins).
    local = re.search(r'<div[^>]*data-testid="local-hint"[^>]*>', home)
    assert local is not None
    assert "admin-only" in local.group()
    assert "hidden" in local.group()


async def test_hints_use_the_public_url(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    world = build_world(make_settings, db_url, server={"public_url": "https://ml.example.com"})
    world.user("admin", Role.ADMIN)
    world.user("alice")
    try:
        as_admin, as_alice, home = await _empty_project_pages(world)
        for html in (as_admin, as_alice, home):
            assert "safeboard login https://ml.example.com" in _text(html)
            assert "127.0.0.1" not in html
    finally:
        await world.close()


async def test_the_grant_form_offers_viewer_first(world: World) -> None:
    seed(world, runs=1)
    admin, _ = await world.signed_in("admin")
    page = (await admin.get("/admin/grants", headers=HTML)).text
    role_select = re.search(r'<select name="role">.*?</select>', page, re.DOTALL)
    assert role_select, page
    selected = re.findall(r'<option value="(\w+)" selected>', role_select.group())
    assert selected == ["viewer"]


async def test_a_filter_error_has_a_place_under_the_box(world: World) -> None:
    seed(world, runs=3)
    admin, _ = await world.signed_in("admin")
    page = (await admin.get("/projects/p", headers=HTML)).text
    box = page.index('id="filter"')
    assert box < page.index('id="filter-problem"') < page.index('id="runs"')
