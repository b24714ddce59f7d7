"""A run page's live chart keeps a batch logged while the chart's first history load is on
its way (chart.js extendCharts answers the charts still loading; run.js asks for them again
at the next tick). Before, that batch's event was dropped: the run's last batch stayed off
the chart until a reload. In headless Chromium against a real server, the first history
request held in the browser context until the batch's event has come and gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import APIResponse, Route, expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess, run_cli
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]


def test_a_batch_logged_during_a_charts_first_load_reaches_the_chart(
    server_factory: Start,
) -> None:
    server = server_factory()
    _, link = startup_link(server)
    made = run_cli("key", "create", "--name", "t", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "live"}).status_code == 201
        run = client.post("/api/v1/projects/live/runs", json={"name": "r"}).json()

        def log(steps: range, batch_id: str) -> None:
            column = {
                "steps": list(steps),
                "times": [1.7e9 + s for s in steps],
                "values": [1.0 / (s + 1) for s in steps],
            }
            body = {"batch_id": batch_id, "metrics": {"loss": column}}
            sent = client.post(f"/api/v1/runs/{run['id']}/metrics", json=body)
            assert sent.status_code == 200, sent.text

        log(range(10), "batch-first")

        with chromium() as browser:
            page, _ = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            # The page's first history request: answered now (steps 0-9), handed to the
            # page only later. The context sees it (the service worker makes it).
            held: list[tuple[Route, APIResponse]] = []

            def hold_first(route: Route) -> None:
                if held or "after_step=" in route.request.url:
                    route.continue_()
                    return
                held.append((route, route.fetch()))

            page.context.route("**/history?*", hold_first)
            page.goto(f"{server.url}/runs/{run['id']}")
            expect(page.locator("body")).to_have_attribute(
                "data-stream", "open", timeout=TIMEOUT_MS
            )
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            while not held and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert held, "the page asked for no history"
            figure = page.locator('figure[data-key="loss"]')
            assert figure.get_attribute("data-points") is None  # not drawn yet

            # The run's last batch, logged while the chart is still on its first load.
            log(range(10, 20), "batch-last")
            expect(page.locator("#live")).to_contain_text("loss at step 19", timeout=TIMEOUT_MS)
            page.wait_for_timeout(2500)  # the next tick (1 s) came and found the chart loading
            assert figure.get_attribute("data-points") is None

            route, answer = held[0]
            route.fulfill(response=answer)
            expect(figure).to_have_attribute("data-points", "20", timeout=10_000)
