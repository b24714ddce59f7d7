"""Issue 18's dashboard in headless Chromium against a real server over TLS: the runs
table's "Delete selected" (ticked rows, asked on the page), the project's Trash tab
(restore, delete for good), the run page's "Delete run", and the owner's settings on the
trash page (retention, rename, delete the project); an admin deletes an account from the
Users page. Every page under the strict CSP with
no console error (browser.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess, start_server
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("trash-ui"))
    yield started
    started.stop()


def api(server: ServerProcess) -> httpx.Client:
    key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    client = server.client()
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def test_delete_restore_purge_rename_and_delete_a_project(server: ServerProcess) -> None:
    ids = {}
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        made = client.post("/api/v1/users", json={"username": "bob", "role": "member"})
        assert made.status_code == 201, made.text
        for name in ("alpha", "beta", "gamma"):
            made = client.post("/api/v1/projects/ml/runs", json={"name": name})
            ids[name] = made.json()["id"]
    admin, link = startup_link(server)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        page.goto(f"{server.url}/projects/ml")
        page.get_by_label("Select alpha").check()
        page.get_by_label("Select beta").check()
        page.locator("#delete-selected").click()
        expect(page.locator("#delete-selected-confirm p")).to_have_text("Move 2 runs to the trash?")
        page.locator("#delete-selected-trash").click()
        expect(page.locator("#runs tbody tr")).to_have_count(1, timeout=TIMEOUT_MS)
        expect(page.locator("#runs tbody")).to_contain_text("gamma")

        page.get_by_role("link", name="Trash").click()
        page.wait_for_url(f"{server.url}/projects/ml/trash", timeout=TIMEOUT_MS)
        rows = page.locator("#trash-table tbody tr")
        expect(rows).to_have_count(2)
        rows.filter(has_text="alpha").get_by_role("button", name="Restore").click()
        expect(page.locator("#trash-status")).to_contain_text("Restored")
        rows.filter(has_text="beta").get_by_role("button", name="Delete for good").click()
        expect(page.locator("#trash-purge-confirm p")).to_contain_text("Delete run beta for good")
        page.locator("#trash-purge-cancel").click()  # "Keep it": nothing happens
        expect(rows).to_have_count(1)
        rows.filter(has_text="beta").get_by_role("button", name="Delete for good").click()
        page.locator("#trash-purge-yes").click()
        expect(page.locator("#trash-status")).to_have_text("Deleted for good.")
        expect(rows).to_have_count(0)

        page.goto(f"{server.url}/runs/{ids['gamma']}")
        page.locator("#delete-run").click()
        page.locator("#delete-run-cancel").click()  # "Keep it": nothing happens
        expect(page.locator("#delete-run")).to_be_visible()
        page.locator("#delete-run").click()
        page.locator("#delete-run-trash").click()
        page.wait_for_url(f"{server.url}/projects/ml/trash", timeout=TIMEOUT_MS)
        expect(page.locator("#trash-table tbody tr")).to_have_count(1)
        expect(page.locator("#trash-table")).to_contain_text("gamma")

        page.locator("#trash-days").fill("7")
        page.get_by_role("button", name="Save retention").click()
        expect(page.locator("#settings-status")).to_contain_text("after 7 days")
        page.locator("#rename-input").fill("ml2")
        page.get_by_role("button", name="Rename").click()
        page.wait_for_url(f"{server.url}/projects/ml2/trash", timeout=TIMEOUT_MS)
        page.locator("#delete-project").click()
        page.locator("#delete-project-yes").click()
        page.wait_for_url(f"{server.url}/trash", timeout=TIMEOUT_MS)
        expect(page.locator("#deleted-projects tbody tr")).to_have_count(1)

        # An admin deletes an account from the Users page (asked in a confirm box).
        page.goto(f"{server.url}/admin/users")
        mine = page.locator("tbody tr", has_text=admin)
        expect(mine.get_by_role("button", name="Delete")).to_be_disabled()
        watch.accept_dialogs = True
        page.locator('tr[data-user="bob"]').get_by_role("button", name="Delete").click()
        expect(page.locator('tr[data-user="bob"]')).to_have_count(0, timeout=TIMEOUT_MS)
        watch.assert_clean()

    with api(server) as client:
        assert client.get(f"/api/v1/runs/{ids['alpha']}").status_code == 404  # with ml2
        assert client.post(f"/api/v1/runs/{ids['beta']}/restore").status_code == 404
        assert client.get("/api/v1/projects/ml2").status_code == 404
        trashed = client.get("/api/v1/trash/projects").json()
        assert [p["name"] for p in trashed] == ["ml2"]
        kept = client.post("/api/v1/projects/ml2/restore").json()
        assert kept["runs"] == 1  # alpha went with it; gamma was in the trash before
        assert client.get(f"/api/v1/runs/{ids['alpha']}").json()["project"] == "ml2"
        assert client.get("/api/v1/projects/ml2/retention").json()["trash_days"] == 7
        assert "bob" not in [u["username"] for u in client.get("/api/v1/users").json()]


def test_deleted_projects_page_and_a_renamed_projects_old_links(server: ServerProcess) -> None:
    """The deleted projects page (from the home page's link): restore one, purge another,
    each asked first; an old link of a renamed project lands on its current name."""
    with api(server) as client:
        for name in ("keep", "drop", "old-name"):
            assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
            made = client.post(f"/api/v1/projects/{name}/runs", json={"name": "r"})
            assert made.status_code == 201
        for name in ("keep", "drop"):
            assert client.delete(f"/api/v1/projects/{name}").status_code == 200
        renamed = client.patch("/api/v1/projects/old-name", json={"name": "new-name"})
        assert renamed.status_code == 200, renamed.text
    _, link = startup_link(server)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.get_by_role("link", name="Deleted projects").click()
        page.wait_for_url(f"{server.url}/trash", timeout=TIMEOUT_MS)
        rows = page.locator("#deleted-projects tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("#deleted-confirm")).to_be_hidden()
        rows.filter(has_text="drop").get_by_role("button", name="Delete for good").click()
        expect(page.locator("#deleted-question")).to_contain_text("drop and all its runs")
        page.locator("#deleted-cancel").click()  # "Keep it": nothing happens
        expect(page.locator("#deleted-confirm")).to_be_hidden()
        expect(rows).to_have_count(2)
        rows.filter(has_text="keep").get_by_role("button", name="Restore").click()
        page.locator("#deleted-yes").click()
        expect(page.locator("#deleted-status")).to_have_text("Restored keep with 1 run.")
        rows.filter(has_text="drop").get_by_role("button", name="Delete for good").click()
        page.locator("#deleted-yes").click()
        expect(page.locator("#deleted-status")).to_have_text("Deleted drop for good (1 run).")
        expect(rows).to_have_count(0)

        page.goto(f"{server.url}/projects/old-name/tasks")
        page.wait_for_url(f"{server.url}/projects/new-name/tasks", timeout=TIMEOUT_MS)
        expect(page.locator("h1")).to_have_text("new-name")
        watch.assert_clean()

    with api(server) as client:
        assert client.get("/api/v1/projects/keep").status_code == 200
        assert client.get("/api/v1/trash/projects").json() == []
        assert client.post("/api/v1/projects", json={"name": "drop"}).status_code == 201
