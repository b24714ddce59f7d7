"""Histograms, image series and text per step in headless Chromium (issue 17): a script
logs them through the SDK in its own process against a real server over TLS; the run page
shows the distribution (bands over steps) and the histogram at the step its slider picks,
a panel per image key with a step slider, the texts escaped; the compare view shows one
image key across two runs side by side. Every page runs under the strict CSP with no
console error and no dialog box (browser.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_dashboard import EVIL, Start, remote_env
from tests.e2e.test_sdk import discovery_key

pytestmark = pytest.mark.e2e

TRAIN = textwrap.dedent(
    """
    import sys
    import numpy as np
    import safeboard

    shade = int(sys.argv[1])
    run = safeboard.init(project="vision", name=f"shade-{shade}", flush_interval=0.2)
    rng = np.random.default_rng(shade)
    for step in range(30):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        run.log_histogram("weights", rng.normal(step / 10, 1 + step / 30, 2000))
        run.log_histogram("grads", counts=[1, 4, 1], edges=[-1, 0, 1, 2])
        if step % 10 == 0:
            run.log_text("notes", sys.argv[2] + f" at {step}", step)
            run.log_image("samples", np.full((8, 12, 3), (shade + step) % 256, np.uint8), step)
    run.finish()
    print(run.id)
    """
)


def train(server: ServerProcess, tmp_path: Path, key: str, shade: int) -> str:
    script = tmp_path / "train_media.py"
    script.write_text(TRAIN)
    done = subprocess.run(
        [sys.executable, str(script), str(shade), EVIL],
        env=remote_env(server, tmp_path / str(shade), key),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not delivered" not in done.stderr, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_histograms_images_and_text_on_the_run_page_and_compared(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls")
    key = discovery_key(server)
    with server.client() as client:
        made = client.post(
            "/api/v1/projects", json={"name": "vision"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert made.status_code == 201, made.text
    first = train(server, tmp_path, key, 10)
    second = train(server, tmp_path, key, 200)
    _, link = startup_link(server)

    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{first}")
        expect(page.locator("#media")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)

        panels = page.get_by_test_id("histogram-panel")
        expect(panels).to_have_count(2)
        weights = page.locator('[data-testid="histogram-panel"][data-key="weights"]')
        expect(weights.get_by_test_id("distribution")).to_have_attribute("data-steps", "30")
        at = weights.get_by_test_id("histogram-at")
        expect(at).to_have_attribute("data-step", "29")  # the last step first
        weights.get_by_test_id("histogram-step").fill("3")
        expect(at).to_have_attribute("data-step", "3", timeout=TIMEOUT_MS)
        expect(weights.locator("output")).to_have_text("3")

        images = page.get_by_test_id("image-panel")
        expect(images).to_have_count(1)
        shown = images.get_by_test_id("series-image")
        expect(shown).to_have_attribute("data-step", "20", timeout=TIMEOUT_MS)
        images.get_by_test_id("image-step").fill("0")
        expect(shown).to_have_attribute("data-step", "0", timeout=TIMEOUT_MS)
        page.wait_for_function("(img) => img.complete && img.naturalWidth === 12",
                               arg=shown.element_handle())  # fmt: skip

        texts = page.get_by_test_id("text-panel").locator("pre")
        expect(texts).to_have_count(3)
        expect(texts.first).to_have_text(f"{EVIL} at 0")  # the markup shown, not run
        assert page.locator("#texts img").count() == 0

        page.goto(f"{server.url}/compare?run={first}&run={second}")
        section = page.locator("#image-compare-section")
        expect(section).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        compared = page.get_by_test_id("compared-image")
        expect(compared).to_have_count(2)
        page.locator("#image-compare-step").fill("1")
        expect(page.locator("#image-compare-at")).to_have_text("10")
        expect(compared.locator("img").first).to_have_attribute("data-step", "10")
        expect(compared.locator("img").nth(1)).to_have_attribute("data-step", "10")
        watch.assert_clean()


def test_what_a_run_logs_last_shows_when_it_ends(server_factory: Start) -> None:
    """The page was opened while the run was running; when it ends (the live stream says
    so), the sections are read again and show the keys that arrived meanwhile."""
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}

    def steps(client: httpx.Client, run_id: str, key: str, batch: str) -> None:
        histogram = {"key": key, "step": 1, "time": 0, "edges": [0, 1, 2], "counts": [1, 2]}
        body = {"batch_id": batch, "histograms": [histogram], "texts": []}
        assert client.post(f"/api/v1/runs/{run_id}/steps", json=body).status_code == 200

    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "late"}).status_code == 201
        run = client.post("/api/v1/projects/late/runs", json={"name": "r"}).json()
        steps(client, run["id"], "first", "batch-first")
        _, link = startup_link(server)
        with chromium() as browser:
            page, watch = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            page.goto(f"{server.url}/runs/{run['id']}")
            panels = page.get_by_test_id("histogram-panel")
            expect(panels).to_have_count(1, timeout=TIMEOUT_MS)
            steps(client, run["id"], "last", "batch-last")
            ended = client.patch(f"/api/v1/runs/{run['id']}", json={"status": "finished"})
            assert ended.status_code == 200, ended.text
            expect(page.locator("#run-status")).to_have_text("finished", timeout=TIMEOUT_MS)
            expect(panels).to_have_count(2, timeout=TIMEOUT_MS)
            expect(page.locator("#media")).to_have_attribute("data-ready", "true")
            watch.assert_clean()
