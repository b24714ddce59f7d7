"""Issue 11's dashboard details in headless Chromium against a real server: the invite
page names its user, a teammate's empty state explains `safeboard login`, the grant form
offers viewer, a refused filter keeps the table, sizes read as in the CLI, and a lost
browser gets an HTML page. Every page runs under the strict CSP (browser.py)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from safeboard.sizes import human_size
from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess, run_cli
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_dashboard import Start, store_artifact
from tests.e2e.test_sdk import discovery_key
from tests.unit.test_sizes import SIZES

pytestmark = pytest.mark.e2e

PASSWORD = "a-long-and-unusual-passphrase-42"


def seeded(server: ServerProcess) -> str:
    """A project "shared" with two runs (one with an artifact of 1,500,000 bytes)."""
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "shared"}).status_code == 201
        assert client.post("/api/v1/projects", json={"name": "empty"}).status_code == 201
        run = client.post("/api/v1/projects/shared/runs", json={"name": "first"}).json()
        client.post("/api/v1/projects/shared/runs", json={"name": "second"})
        store_artifact(client, run["id"], "weights.pt", b"\0" * 1_500_000,
                       content_type="application/vnd.snesdev-page-table")  # fmt: skip
    return str(run["id"])


def test_dashboard_details_for_admins_and_teammates(server_factory: Start) -> None:
    server = server_factory()
    run_id = seeded(server)
    added = run_cli("user", "add", "alice", "--display-name", "Alice A.", "--invite",
                    data_dir=server.data_dir)  # fmt: skip
    assert added.returncode == 0, added.stderr
    invite_link = next(w for w in added.stdout.split() if "/invite#token=" in w)
    _, link = startup_link(server)

    with chromium() as browser:
        admin, admin_watch = browser.new_page()
        admin.goto(link)
        admin.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        # Sizes read as the CLI writes them; the dashboard's function agrees with the CLI's.
        admin.goto(f"{server.url}/runs/{run_id}")
        row = admin.locator("#artifacts tbody tr", has_text="weights.pt")
        expect(row.locator("td.num")).to_have_text("1.5 MB", timeout=TIMEOUT_MS)
        expect(row).to_contain_text("file")
        written = admin.evaluate(
            "async (sizes) => { const { humanSize } = await import('/static/app.js');"
            " return sizes.map(humanSize); }",
            [size for size, _ in SIZES],
        )
        assert written == [human_size(size) for size, _ in SIZES]

        # A refused filter: the error under the box, the table as it was.
        admin.goto(f"{server.url}/projects/shared")
        rows = admin.locator("#runs tbody tr")
        expect(rows).to_have_count(2)
        admin.get_by_label("Filter").fill("metrics.train/acc > 0.9 and")
        admin.get_by_role("button", name="Apply").click()
        problem = admin.locator("#filter-problem")
        expect(problem).to_be_visible(timeout=TIMEOUT_MS)
        expect(problem).to_contain_text("filter: at column 28: expected a field")
        expect(rows).to_have_count(2)
        assert admin.url == f"{server.url}/projects/shared"
        admin.get_by_label("Filter").fill("metrics.train/acc > 0.9")  # "/" in a key: fine
        admin.get_by_role("button", name="Apply").click()
        admin.wait_for_url("**filter=metrics.train%2Facc*", timeout=TIMEOUT_MS)
        expect(admin.get_by_text("No run matches this filter.")).to_be_visible()

        # The grant form offers the least power first.
        admin.goto(f"{server.url}/admin/grants")
        section = admin.locator('section[data-project="shared"]')
        expect(section.get_by_label("Role")).to_have_value("viewer")

        # A lost browser gets a page in the dashboard's style, not JSON.
        answer = admin.goto(f"{server.url}/no/such/page")
        assert answer is not None
        assert answer.status == 404
        expect(admin.get_by_role("heading", name="Not found")).to_be_visible()
        expect(admin.get_by_role("link", name="Back to your projects")).to_be_visible()

        # Alice's invitation names her; the lookup does not spend it.
        alice, alice_watch = browser.new_page()
        alice.goto(invite_link)
        expect(alice.get_by_test_id("invitee")).to_have_text(
            "Set a password for Alice A. (alice).", timeout=TIMEOUT_MS
        )
        alice.get_by_label("New password").fill(PASSWORD)
        alice.get_by_label("Repeat it").fill(PASSWORD)
        alice.get_by_role("button", name="Set password and sign in").click()
        alice.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        # Her empty states explain `safeboard login` and the CA, not "no configuration".
        expect(alice.locator("#no-projects")).to_be_visible(timeout=TIMEOUT_MS)
        expect(alice.get_by_test_id("login-hint")).to_contain_text(f"safeboard login {server.url}")
        expect(alice.get_by_test_id("login-hint")).to_contain_text("fingerprint")
        expect(alice.get_by_test_id("local-hint")).to_be_hidden()
        admin.goto(f"{server.url}/admin/grants")
        empty = admin.locator('section[data-project="empty"]')
        empty.get_by_label("User").select_option("alice")
        empty.get_by_role("button", name="Grant").click()  # the role as offered
        expect(empty.locator("tbody tr", has_text="alice")).to_contain_text("viewer")
        alice.goto(f"{server.url}/projects/empty")
        hint = alice.get_by_test_id("empty-project")
        expect(hint).to_contain_text(f"safeboard login {server.url}")
        expect(hint).not_to_contain_text("no configuration")
        admin_watch.assert_clean()
        alice_watch.assert_clean()
