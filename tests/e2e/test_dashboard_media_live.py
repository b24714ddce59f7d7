"""A running run's histograms, image series and texts follow it live on its page (issue
17): new steps and new keys appear without a reload, through the run's event stream
(``event: media``), while the run is still running. A slider the user moved stays on the
step they chose; one at the newest step follows the new ones. Headless Chromium against a
real server, under the strict CSP with no console error (browser.py)."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from safeboard.sdk.images import pixels_of, png_bytes
from tests.e2e.browser import chromium
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_dashboard import Start
from tests.e2e.test_sdk import discovery_key

pytestmark = pytest.mark.e2e


class Logger:
    """What a training script's SDK sends, through the same API."""

    def __init__(self, client: httpx.Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.batches = 0

    def steps(self, histograms: dict[str, list[int]], texts: dict[str, int]) -> None:
        self.batches += 1
        body = {
            "batch_id": f"media-batch-{self.batches}",
            "histograms": [
                {"key": key, "step": step, "time": 0, "edges": [0, 1, 2, 3],
                 "counts": [step + 1, 2, 1]}
                for key, steps in histograms.items() for step in steps
            ],
            "texts": [{"key": k, "step": s, "time": 0, "text": f"<b>at {s}</b>"}
                      for k, s in texts.items()],
        }  # fmt: skip
        sent = self.client.post(f"/api/v1/runs/{self.run_id}/steps", json=body)
        assert sent.status_code == 200, sent.text

    def image(self, key: str, step: int) -> None:
        data = png_bytes(pixels_of(np.full((8, 12, 3), step * 40, np.uint8)))
        spec = {"name": key, "kind": "image", "content_type": "image/png", "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "step": step}  # fmt: skip
        declared = self.client.post(f"/api/v1/runs/{self.run_id}/artifacts", json=spec)
        assert declared.status_code == 201, declared.text
        sent = self.client.put(
            f"/api/v1/artifacts/{declared.json()['id']}/content", content=data,
            headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
        assert sent.json()["state"] == "ready"


def test_new_steps_and_keys_appear_while_the_run_is_running(server_factory: Start) -> None:
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "live"}).status_code == 201
        run_id = client.post("/api/v1/projects/live/runs", json={"name": "r"}).json()["id"]
        log = Logger(client, run_id)
        log.steps({"weights": [0, 1]}, {"notes": 0})
        log.image("samples", 0)
        _, link = startup_link(server)
        with chromium() as browser:
            page, watch = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            page.goto(f"{server.url}/runs/{run_id}")
            media = page.locator("#media")
            expect(media).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
            expect(page.locator("body")).to_have_attribute("data-stream", "open")
            weights = page.locator('[data-testid="histogram-panel"][data-key="weights"]')
            bands = weights.get_by_test_id("distribution")
            at = weights.get_by_test_id("histogram-at")
            expect(bands).to_have_attribute("data-steps", "2")
            expect(at).to_have_attribute("data-step", "1")
            weights.get_by_test_id("histogram-step").fill("0")  # the user looks at step 0
            expect(at).to_have_attribute("data-step", "0", timeout=TIMEOUT_MS)
            image = page.get_by_test_id("series-image")
            expect(image).to_have_attribute("data-step", "0", timeout=TIMEOUT_MS)
            texts = page.get_by_test_id("text-panel").locator("pre")
            expect(texts).to_have_count(1)

            log.steps({"weights": [2, 3], "grads": [3]}, {"notes": 3})
            log.image("samples", 3)
            log.image("inputs", 3)
            expect(bands).to_have_attribute("data-steps", "4", timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("histogram-panel")).to_have_count(2, timeout=TIMEOUT_MS)
            expect(texts).to_have_count(2, timeout=TIMEOUT_MS)
            expect(texts.last).to_have_text("<b>at 3</b>")  # shown as text, not markup
            expect(image.first).to_have_attribute("data-step", "3", timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("image-panel")).to_have_count(2, timeout=TIMEOUT_MS)
            expect(at).to_have_attribute("data-step", "0")  # the user's choice is kept
            expect(weights.locator("output")).to_have_text("0")

            weights.get_by_test_id("histogram-step").fill("3")  # back at the newest ...
            expect(at).to_have_attribute("data-step", "3", timeout=TIMEOUT_MS)
            log.steps({"weights": [4]}, {})
            expect(at).to_have_attribute("data-step", "4", timeout=TIMEOUT_MS)  # ... follows
            expect(page.locator("#run-status")).to_have_text("running")
            watch.assert_clean()


def test_keys_beyond_the_panels_drawn_are_counted_once_each(server_factory: Start) -> None:
    """More keys than panels (50): the section says how many there are. It used to count
    a key twice at load and once more for every live event of a key not drawn."""
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "many"}).status_code == 201
        run_id = client.post("/api/v1/projects/many/runs", json={"name": "r"}).json()["id"]
        log = Logger(client, run_id)
        log.steps({}, {f"note{i:02d}": 0 for i in range(51)})
        _, link = startup_link(server)
        with chromium() as browser:
            page, watch = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            page.goto(f"{server.url}/runs/{run_id}")
            expect(page.locator("#media")).to_have_attribute(
                "data-ready", "true", timeout=TIMEOUT_MS
            )
            expect(page.locator("body")).to_have_attribute("data-stream", "open")
            status = page.locator("#texts-status")
            expect(page.get_by_test_id("text-panel")).to_have_count(50)
            expect(status).to_have_text("The first 50 of 51 keys.")
            log.steps({}, {"note50": 1, "note00": 1})  # the key not drawn moves: no new key
            log.steps({}, {"note50": 2, "note00": 2})
            texts = page.locator('[data-testid="text-panel"][data-key="note00"] pre')
            expect(texts).to_have_count(3, timeout=TIMEOUT_MS)
            expect(status).to_have_text("The first 50 of 51 keys.")
            log.steps({}, {"note51": 0})  # a new key beyond the panels
            expect(status).to_have_text("The first 50 of 52 keys.", timeout=TIMEOUT_MS)
            watch.assert_clean()
