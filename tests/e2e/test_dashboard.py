"""The dashboard as a new user meets it, in headless Chromium against a real server over
TLS: sign in with the startup link, make an API key on the account page, train with the
SDK from another "machine" (that key, the URL and the CA certificate only) and watch the
chart grow live, zoom, smooth, compare two runs, sign out. Every page runs under the
strict CSP; a violation, an uncaught error or a dialog box fails the test (browser.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from safeboard.sdk.images import Pixels, encode_png
from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, run_cli
from tests.e2e.test_browser_login import ON_LOGIN_PAGE, TIMEOUT_MS, startup_link
from tests.e2e.test_sdk import discovery_key

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
NEW_PASSWORD = "quartz-Meadow-lantern-93-slowly"
EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

TRAIN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import safeboard

    name, lr, steps, pause = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    run = safeboard.init(project="vision", name=name, config={"lr": lr, "layers": [64, 32]},
                         flush_interval=0.2)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1) / lr, "acc": step / steps}, step=step)
        if pause:
            time.sleep(pause)
    if pause:  # the slow run also saves a report and a picture
        report = Path(sys.argv[5]) / "report.txt"
        report.write_text("accuracy 0.97\\n")
        run.log_artifact(report)
        gradient = np.tile(np.linspace(0, 1, 64), (48, 1))
        run.log_image(np.stack([gradient, gradient.T[:48, :1].repeat(64, 1), 1 - gradient], -1),
                      step=steps - 1, name="samples.png")
    run.finish()
    print(run.id)
    """
)


def remote_env(server: ServerProcess, tmp_path: Path, key: str) -> dict[str, str]:
    """A training machine that knows only the URL, a key and the CA certificate."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env.update(
        SAFEBOARD_URL=server.url,
        SAFEBOARD_API_KEY=key,
        SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_DATA_DIR=str(tmp_path / "elsewhere"),  # no discovery file there
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "config"),
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    return env


def train(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "not delivered" not in err, err  # else the run is still "running" on the server
    return out.strip().splitlines()[-1]


def points_of(page: Page, key: str) -> int:
    figure = page.locator(f'figure[data-key="{key}"]')
    value = figure.get_attribute("data-points", timeout=TIMEOUT_MS)
    return int(value or 0)


def store_artifact(
    client: httpx.Client, run_id: str, name: str, content: bytes, **declared: str
) -> None:
    """Declare an artifact and send its bytes in one request (the API, not the SDK)."""
    made = client.post(
        f"/api/v1/runs/{run_id}/artifacts",
        json={"name": name, "size": len(content),
              "sha256": hashlib.sha256(content).hexdigest(), **declared},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    stored = client.put(
        f"/api/v1/artifacts/{made.json()['id']}/content",
        content=content,
        headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )
    assert stored.status_code == 200, stored.text


def create_key(page: Page, url: str) -> str:
    page.goto(f"{url}/account")
    page.get_by_label("Name").fill("training box")
    page.get_by_label("Scope").select_option("write")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key")
    expect(secret).to_have_text(re.compile(r"^sb_[0-9a-f]+_\S{40,}$"), timeout=TIMEOUT_MS)
    expect(page.locator("#keys tbody tr", has_text="training box")).to_have_count(1)
    return secret.inner_text()


def test_from_startup_link_to_a_live_chart_and_a_comparison(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls")
    _, link = startup_link(server)

    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, watch = browser.new_page()
        page.set_viewport_size({"width": 1366, "height": 768})  # a laptop
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_contain_text("(admin)")
        expect(page.locator("#no-projects")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("local-hint")).to_contain_text("safeboard.init(")  # admin
        expect(page.get_by_test_id("login-hint")).to_contain_text(f"safeboard login {server.url}")

        key = create_key(page, server.url)
        page.reload()  # the secret is shown once: gone after a reload
        expect(page.locator("#keys tbody tr", has_text="training box")).to_have_count(1)
        assert key not in page.content()

        # Train slowly on the "other machine"; watch the run appear and its chart grow.
        env = remote_env(server, tmp_path, key)
        slow = train(tmp_path, env, "slow-run", "0.01", "600", "0.02", str(tmp_path))
        try:
            page.goto(f"{server.url}/")
            row = page.get_by_role("link", name="vision")
            expect(row).to_be_visible(timeout=30_000)
            runs_cell = page.locator("#projects tbody tr", has=row).locator("td").nth(1)
            expect(runs_cell).to_have_text("1")  # the projects list counts its runs
            row.click()
            run_link = page.get_by_role("link", name="slow-run")
            expect(run_link).to_be_visible(timeout=TIMEOUT_MS)
            # The table hears the run logging (the project's event stream).
            expect(page.locator("#live")).to_contain_text("1 run changed since this page loaded")
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            run_link.click()
            expect(page.get_by_test_id("run-name")).to_have_text("slow-run")
            expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
            chart = page.locator('figure[data-key="loss"]')
            expect(chart.locator("canvas")).to_have_count(1)
            before = points_of(page, "loss")
            deadline = time.monotonic() + 30
            while points_of(page, "loss") <= before and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            grown = points_of(page, "loss")
            assert grown > before, "the chart did not update live"
            # Both charts drawn from one request, then grown from tails: the points after
            # each chart's last step (issue 12), never the whole history again.
            histories = [u for u in asked if "/history?" in u]
            first, tails = histories[0], histories[1:]
            assert "metric=loss" in first, histories
            assert "metric=acc" in first, histories
            assert "after_step=" not in first
            assert tails, histories
            assert all("after_step=" in u for u in tails), histories
        finally:
            slow_id = finished(slow)
        expect(page.locator("#run-status")).to_have_text("finished", timeout=TIMEOUT_MS)
        assert slow_id in page.url

        # Its artifacts: listed once it finished, the picture previewed through a signed
        # link, the report downloaded as an attachment.
        artifacts = page.locator("#artifacts tbody tr")
        expect(artifacts).to_have_count(2, timeout=TIMEOUT_MS)
        artifacts.first.scroll_into_view_if_needed()  # previews are made as they are seen
        preview = page.get_by_role("img", name="Preview of samples.png")
        expect(preview).to_have_attribute("src", re.compile(r"^/files/preview/"))
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth === 64", arg=preview.element_handle()
        )
        report_row = artifacts.filter(has_text="report.txt")
        with page.expect_download() as downloading:
            report_row.get_by_role("link", name="Download").click()
        downloaded = downloading.value
        assert downloaded.suggested_filename == "report.txt"
        assert Path(downloaded.path()).read_text() == "accuracy 0.97\n"

        # Notes and tags, edited by the project's owner (text stays text).
        page.get_by_text("Edit notes").click()
        page.get_by_label("Notes", exact=True).fill("<b>tried</b> a smaller lr")
        page.get_by_role("button", name="Save notes").click()
        expect(page.get_by_test_id("notes")).to_have_text("<b>tried</b> a smaller lr")
        page.get_by_label("Tag", exact=True).fill("best")
        page.get_by_label("Value", exact=True).fill("yes")
        page.get_by_role("button", name="Add tag").click()
        expect(page.get_by_test_id("tags")).to_contain_text("best")
        page.get_by_role("button", name="Remove tag best").click()
        expect(page.get_by_test_id("tags")).to_have_count(0)
        page.reload()
        expect(page.get_by_test_id("notes")).to_have_text("<b>tried</b> a smaller lr")
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true")

        # Hover shows values; dragging zooms (and refetches that range); double-click resets.
        chart.scroll_into_view_if_needed()
        box = chart.locator(".u-over").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5)
        expect(chart.locator(".readout")).to_contain_text("step")
        expect(chart.locator(".readout")).to_contain_text("loss: ")
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 40, steps=5)
        page.mouse.up()
        expect(chart).to_have_attribute("data-zoomed", "true", timeout=TIMEOUT_MS)
        expect(page.get_by_label("From step")).not_to_have_value("")  # the range it chose
        page.get_by_role("button", name="Reset zoom").click()
        expect(chart).to_have_attribute("data-zoomed", "false", timeout=TIMEOUT_MS)
        expect(page.get_by_label("From step")).to_have_value("")
        all_points = points_of(page, "loss")
        # The same from the keyboard alone: a step range typed into the form.
        page.get_by_label("From step").focus()
        page.keyboard.type("300")
        page.keyboard.press("Tab")
        page.keyboard.type("200")
        page.keyboard.press("Enter")  # backwards: refused with a message, nothing zoomed
        to_step = page.get_by_label("to step")
        assert "second larger" in to_step.evaluate("e => e.validationMessage")
        expect(chart).to_have_attribute("data-zoomed", "false")
        to_step.fill("")
        to_step.focus()
        page.keyboard.type("400")
        page.keyboard.press("Enter")
        expect(chart).to_have_attribute("data-zoomed", "true", timeout=TIMEOUT_MS)
        assert 0 < points_of(page, "loss") <= 101 < all_points
        page.get_by_role("button", name="Reset zoom").click()
        expect(chart).to_have_attribute("data-zoomed", "false", timeout=TIMEOUT_MS)
        page.get_by_label("Smoothing").fill("0.9")
        expect(page.locator("#smoothing-value")).to_have_text("0.9")
        expect(chart.locator(".u-legend")).to_contain_text("raw")
        page.get_by_label("Log scale").check()
        page.get_by_label("X axis").select_option("time")
        expect(chart.locator(".u-legend")).to_contain_text("time", timeout=TIMEOUT_MS)

        # A second run, then compare the two from the project's table.
        quick_id = finished(train(tmp_path, env, "quick-run", "0.1", "50", "0"))
        page.goto(f"{server.url}/projects/vision")
        expect(page.get_by_test_id("run-count")).to_have_text("2 shown of 2 runs")
        page.get_by_label("Select slow-run").check()
        page.get_by_label("Select quick-run").check()
        page.get_by_role("button", name="Compare 2 runs").click()
        page.wait_for_url(f"{server.url}/compare?**", timeout=TIMEOUT_MS)
        assert slow_id in page.url
        assert quick_id in page.url
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
        loss = page.locator('figure[data-key="loss"]')
        expect(loss.locator(".u-legend")).to_contain_text("slow-run")
        expect(loss.locator(".u-legend")).to_contain_text("quick-run")
        diff = page.get_by_test_id("param-diff")
        expect(diff.locator("tbody tr")).to_have_count(1)
        expect(diff.locator("tbody tr")).to_contain_text("lr")
        page.get_by_label("acc").uncheck()
        expect(page.locator('figure[data-key="acc"]')).to_have_count(0)

        # Nothing on any page overflows a laptop screen sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366

        # Revoking the key on the account page stops it at once.
        page.goto(f"{server.url}/account")
        watch.accept_dialogs = True  # "Revoke the key ...? Scripts using it stop at once."
        page.get_by_role("button", name="Revoke key training box").click()
        expect(page.locator("#keys tbody tr", has_text="training box")).to_have_count(0)
        watch.accept_dialogs = False
        with server.client() as client:
            gone = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {key}"})
        assert gone.status_code == 401

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/projects/vision")
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        assert "next=%2Fprojects%2Fvision" in page.url
        watch.assert_clean()


def test_html_in_run_text_stays_text_in_the_browser(server_factory: Start) -> None:
    server = server_factory()
    key = discovery_key(server)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "xss"}).status_code == 201
        evil = client.post(
            "/api/v1/projects/xss/runs",
            json={"name": EVIL, "config": {EVIL: EVIL}, "tags": {"t": EVIL}, "notes": EVIL},
        ).json()
        plain = client.post("/api/v1/projects/xss/runs", json={"name": "plain"}).json()
        batch = {"steps": [0, 1], "times": [0.0, 1.0], "values": [1.0, 0.5]}
        for run in (evil, plain):
            sent = client.post(
                f"/api/v1/runs/{run['id']}/metrics",
                json={"batch_id": f"b-{run['id'][:12]}", "metrics": {EVIL[:40]: batch}},
            )
            assert sent.status_code == 200, sent.text
        store_artifact(client, evil["id"], EVIL, b"<script>alert(3)</script>",
                       content_type="text/html")  # fmt: skip
    _, link = startup_link(server)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{evil['id']}")
        expect(page.get_by_test_id("run-name")).to_have_text(EVIL)
        expect(page.get_by_test_id("params")).to_contain_text(EVIL)
        expect(page.get_by_test_id("tags")).to_contain_text(EVIL)
        expect(page.get_by_test_id("notes")).to_have_text(EVIL)
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
        expect(page.locator("figure h3")).to_have_text(EVIL[:40])
        expect(page.locator("#artifacts tbody th")).to_have_text(EVIL)
        assert page.locator("main img, main script").count() == 0

        page.goto(f"{server.url}/projects/xss?col=tags.t&col=params.{EVIL[:4]}")
        expect(page.get_by_role("link", name=EVIL)).to_have_count(1)
        assert page.locator("main img, main script").count() == 0

        # Keyboard: the first Tab reaches "Skip to content"; the table's links take Enter.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.get_by_role("link", name="plain").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"{server.url}/runs/{plain['id']}", timeout=TIMEOUT_MS)

        page.goto(f"{server.url}/compare?run={evil['id']}&run={plain['id']}&all=1")
        expect(page.locator("#compare-runs")).to_contain_text(EVIL)
        expect(page.get_by_test_id("param-diff")).to_contain_text(EVIL)
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
        assert page.locator("main img, main script").count() == 0
        assert page.evaluate("typeof window.__injected") == "undefined"
        watch.assert_clean()  # no alert() ran, no CSP violation was even attempted


def test_a_run_with_many_images_shows_them_a_page_at_a_time(server_factory: Start) -> None:
    """130 images: the table shows 100 and "Show more" the rest; a preview link is minted
    only for images that come near the screen, not for every row."""
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "gallery"}).status_code == 201
        run = client.post("/api/v1/projects/gallery/runs", json={"name": "many"}).json()
        for i in range(130):
            png = encode_png(Pixels(bytes([i, 255 - i, 128]) * 16, 4, 4, 3))
            store_artifact(client, run["id"], f"sample-{i:03}.png", png, kind="image",
                           content_type="image/png")  # fmt: skip
    _, link = startup_link(server)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.set_viewport_size({"width": 1366, "height": 768})
        minted: list[str] = []
        page.on("request", lambda r: minted.append(r.url) if r.url.endswith("/preview") else None)
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{run['id']}")
        rows = page.locator("#artifacts tbody tr")
        expect(rows).to_have_count(100, timeout=TIMEOUT_MS)
        expect(page.locator("#artifacts-status")).to_have_text("100 of 130 artifacts shown")
        rows.first.scroll_into_view_if_needed()
        first = page.get_by_role("img", name="Preview of sample-000.png")
        expect(first).to_have_attribute("src", re.compile(r"^/files/preview/"))
        page.wait_for_function("(img) => img.complete && img.naturalWidth === 4",
                               arg=first.element_handle())  # fmt: skip
        assert 0 < len(minted) < 100, len(minted)  # the rows near the screen only
        rows.nth(99).scroll_into_view_if_needed()
        expect(page.get_by_role("img", name="Preview of sample-099.png")).to_be_visible()
        page.get_by_role("button", name="Show more artifacts").click()
        expect(rows).to_have_count(130, timeout=TIMEOUT_MS)
        expect(page.locator("#artifacts-status")).to_have_text("130 artifacts")
        expect(page.get_by_role("button", name="Show more artifacts")).to_be_hidden()
        assert rows.nth(129).locator("th").inner_text() == "sample-129.png"
        assert len(minted) < 130
        watch.assert_clean()


@pytest.mark.postgres
def test_a_run_page_catches_up_after_its_server_restarts(
    server_factory: Start, pg_url: str, tmp_path: Path
) -> None:
    """Two replicas on one PostgreSQL. The page's replica goes down; the run finishes
    through the other; when the first is back the page, whose stream missed that event,
    shows the run finished."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir(mode=0o700)
        (tmp_path / name / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    replica_b = server_factory(name="b")
    replica_a = server_factory(name="a")  # the newest start's sign-in link is the valid one
    _, link = startup_link(replica_a)
    made = run_cli("key", "create", "--name", "t", "--scope", "write", data_dir=replica_b.data_dir)
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx.Client(base_url=replica_b.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "live"}).status_code == 201
        run = client.post("/api/v1/projects/live/runs", json={"name": "r"}).json()

        def log(key: str, batch_id: str) -> None:
            column = {"steps": [0, 1], "times": [1.7e9, 1.7e9 + 1], "values": [1.0, 0.5]}
            sent = client.post(f"/api/v1/runs/{run['id']}/metrics",
                               json={"batch_id": batch_id, "metrics": {key: column}})  # fmt: skip
            assert sent.status_code == 200, sent.text

        log("loss", "batch-loss-1")

        with chromium() as browser:
            page, watch = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{replica_a.url}/", timeout=TIMEOUT_MS)
            page.goto(f"{replica_a.url}/runs/{run['id']}")
            stream = page.locator("body")
            expect(stream).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)
            expect(page.locator("#run-status")).to_have_text("running")
            expect(page.locator('figure[data-key="loss"] canvas')).to_have_count(1)
            replica_a.stop()
            expect(stream).to_have_attribute("data-stream", "reconnecting", timeout=TIMEOUT_MS)
            expect(page.locator("#live")).to_contain_text("reconnecting")
            log("acc", "batch-acc-1")  # a metric that begins while the page hears nothing
            finished = client.patch(f"/api/v1/runs/{run['id']}", json={"status": "finished"})
            assert finished.status_code == 200, finished.text
            server_factory(name="a", port=replica_a.port)  # the same replica, back
            expect(page.locator("#run-status")).to_have_text("finished", timeout=20_000)
            expect(page.locator('figure[data-key="acc"] canvas')).to_have_count(1)
            expect(stream).to_have_attribute("data-stream", "open")
            # Only the refused reconnections may have reached the console.
            watch.console[:] = [c for c in watch.console if "ERR_CONNECTION_REFUSED" not in c]
            watch.assert_clean()


def test_admin_invites_grants_audits_and_signs_a_user_out(server_factory: Start) -> None:
    server = server_factory()
    key = discovery_key(server)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        made = client.post(
            "/api/v1/projects",
            json={"name": "shared"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert made.status_code == 201, made.text
    _, link = startup_link(server)

    with chromium() as browser:
        admin, admin_watch = browser.new_page()
        admin.goto(link)
        admin.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        admin.get_by_role("link", name="Users").click()
        admin.get_by_label("User name").fill("alice")
        admin.get_by_label("Display name").fill("Alice <b>A.</b>")
        admin.get_by_role("button", name="Add and make an invitation link").click()
        invite = admin.get_by_test_id("invite-link")
        expect(invite).to_contain_text("/invite#token=", timeout=TIMEOUT_MS)
        invite_link = invite.inner_text()

        # Alice follows the link in her own browser and sets a password.
        alice, alice_watch = browser.new_page()
        alice.goto(invite_link)
        alice.get_by_label("New password").fill("a-long-and-unusual-passphrase-42")
        alice.get_by_label("Repeat it").fill("a-long-and-unusual-passphrase-42")
        alice.get_by_role("button", name="Set password and sign in").click()
        alice.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(alice.get_by_test_id("who")).to_have_text("Signed in as alice (member)")
        expect(alice.locator("#no-projects")).to_be_visible(timeout=TIMEOUT_MS)
        expect(alice.get_by_role("link", name="Users")).to_be_hidden()
        alice.goto(f"{server.url}/admin/users")
        expect(alice.get_by_role("heading", name="Not allowed")).to_be_visible()

        # The admin grants her viewer on "shared"; she sees it.
        admin.get_by_role("link", name="Grants").click()
        section = admin.locator('section[data-project="shared"]')
        section.get_by_label("User").select_option("alice")
        section.get_by_label("Role").select_option("viewer")
        section.get_by_role("button", name="Grant").click()
        expect(section.locator("tbody tr", has_text="alice")).to_contain_text("viewer")
        alice.goto(f"{server.url}/")
        expect(alice.get_by_role("link", name="shared")).to_be_visible(timeout=TIMEOUT_MS)
        alice.get_by_role("link", name="shared").click()
        expect(alice.get_by_test_id("empty-project")).to_contain_text("safeboard.init(")

        # The audit log tells the story, filtered.
        admin.get_by_role("link", name="Audit log").click()
        admin.get_by_label("Action").select_option("grant.changed")
        admin.get_by_role("button", name="Filter").click()
        rows = admin.locator("#audit tbody tr")
        expect(rows).to_have_count(2)  # the owner grant at creation, then alice's
        expect(rows.first).to_contain_text('"to": "viewer"')
        admin.get_by_label("Action").select_option("")
        admin.get_by_label("Actor contains").fill("alice")
        admin.get_by_role("button", name="Filter").click()
        expect(rows.filter(has_text="invite.used")).to_have_count(1)

        # Alice signs out her own other session; then the admin signs her out everywhere.
        second, _ = browser.new_page()
        second.goto(f"{server.url}/login")
        second.get_by_label("User name").fill("alice")
        second.get_by_label("Password").fill("a-long-and-unusual-passphrase-42")
        second.get_by_role("button", name="Sign in").click()
        second.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        alice.goto(f"{server.url}/account")
        sessions = alice.locator("#sessions tbody tr")
        expect(sessions).to_have_count(2)
        sessions.get_by_role("button", name="Sign out").click()
        expect(sessions).to_have_count(1)
        second.goto(f"{server.url}/account")
        second.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)

        # She changes her password on the account page; a wrong current one is refused.
        alice.get_by_label("Current password").fill("not-my-password-at-all")
        alice.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        alice.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
        alice.get_by_role("button", name="Change password").click()
        expect(alice.locator("#password-status")).to_have_text("current password is wrong")
        alice.get_by_label("Current password").fill("a-long-and-unusual-passphrase-42")
        alice.get_by_role("button", name="Change password").click()
        expect(alice.locator("#password-status")).to_contain_text("Password changed")
        second.get_by_label("User name").fill("alice")
        second.get_by_label("Password").fill(NEW_PASSWORD)
        second.get_by_role("button", name="Sign in").click()
        second.wait_for_url(f"{server.url}/account", timeout=TIMEOUT_MS)  # back where it was
        expect(second.locator("#sessions tbody tr")).to_have_count(2)

        admin.get_by_role("link", name="Sessions").click()
        admin_watch.accept_dialogs = True  # "Sign alice out everywhere?"
        admin.get_by_role("button", name="End all of alice's sessions").click()
        expect(admin.locator("#all-sessions tbody tr", has_text="alice")).to_have_count(0)
        alice.goto(f"{server.url}/projects/shared")
        alice.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)

        # Roles and disabling, from the users page.
        admin.get_by_role("link", name="Users").click()
        admin.get_by_label("Role of alice").select_option("admin")
        expect(admin.locator("#status")).to_have_text("alice is now admin.")
        admin.locator('tr[data-user="alice"]').get_by_role("button", name="Disable").click()
        row = admin.locator('tr[data-user="alice"]')
        expect(row).to_contain_text("disabled", timeout=TIMEOUT_MS)
        expect(admin.get_by_label("Role of alice")).to_have_value("admin")
        alice.get_by_label("User name").fill("alice")
        alice.get_by_label("Password").fill(NEW_PASSWORD)
        with alice.expect_response("**/api/v1/auth/login") as refused:
            alice.get_by_role("button", name="Sign in").click()
        assert refused.value.status == 401
        admin_watch.assert_clean()
        alice_watch.assert_clean()
