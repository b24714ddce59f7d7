"""A run page's live charts miss nothing logged while the page is still loading, in
headless Chromium against a real server, each case held at its moment in the browser
context (the service worker's requests are routed there too):

- a batch logged while a chart's first history load is on its way (chart.js extendCharts
  answers the charts still loading; run.js asks for them again at the next tick). Before,
  that batch's event was dropped: the run's last batch stayed off the chart until a reload;
- a metric that begins while the chart library is still loading: its event came before
  run.js could draw a chart and was dropped, so the metric had no chart until a reload
  (found as a flaky e2e test on a loaded CI machine);
- a metric that begins after the page was made and before its event stream is open: no
  event told the page; it reads the run's metric list once the stream is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

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


def _page_and_run(server: ServerProcess) -> tuple[httpx.Client, str, str]:
    _, link = startup_link(server)
    made = run_cli("key", "create", "--name", "t", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {made.stdout.strip()}"},
        timeout=10,
    )  # fmt: skip
    assert client.post("/api/v1/projects", json={"name": "live"}).status_code == 201
    run_id = client.post("/api/v1/projects/live/runs", json={"name": "r"}).json()["id"]
    _log(client, run_id, "batch-loss", "loss", range(10))
    return client, run_id, link


def _log(client: httpx.Client, run_id: str, batch_id: str, key: str, steps: range) -> None:
    column = {
        "steps": list(steps),
        "times": [1.7e9 + s for s in steps],
        "values": [1.0 / (s + 1) for s in steps],
    }
    body = {"batch_id": batch_id, "metrics": {key: column}}
    sent = client.post(f"/api/v1/runs/{run_id}/metrics", json=body)
    assert sent.status_code == 200, sent.text


def _open_holding(
    browser: Any, server: ServerProcess, link: str, run_id: str, pattern: str
) -> tuple[Any, Any, list[Route]]:
    """The run's page, signed in, with the first request matching ``pattern`` held (the
    list holds its route, to be continued by the test); later ones go through."""
    page, watch = browser.new_page()
    page.goto(link)
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
    held: list[Route] = []

    def hold_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.context.route(pattern, hold_first)
    page.goto(f"{server.url}/runs/{run_id}")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, f"the page made no request for {pattern}"
    return page, watch, held


def test_a_metric_that_begins_while_the_chart_library_loads_gets_a_chart(
    server_factory: Start,
) -> None:
    server = server_factory()
    client, run_id, link = _page_and_run(server)
    with closing(client), chromium() as browser:
        page, watch, held = _open_holding(browser, server, link, run_id, "**/chart.js")
        expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)

        _log(client, run_id, "batch-acc", "acc", range(10))
        expect(page.locator("#live")).to_contain_text("acc at step 9", timeout=TIMEOUT_MS)
        held[0].continue_()
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        expect(page.locator('figure[data-key="acc"]')).to_have_attribute(
            "data-points", "10", timeout=TIMEOUT_MS
        )
        expect(page.locator('figure[data-key="loss"]')).to_have_attribute("data-points", "10")
        expect(page.locator("#charts figure")).to_have_count(2)
        watch.assert_clean()


def test_a_metric_that_begins_before_the_stream_opens_gets_a_chart(
    server_factory: Start,
) -> None:
    server = server_factory()
    client, run_id, link = _page_and_run(server)
    with closing(client), chromium() as browser:
        stream = f"**/api/v1/runs/{run_id}/events"
        page, watch, held = _open_holding(browser, server, link, run_id, stream)
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        assert page.locator("body").get_attribute("data-stream") != "open"

        _log(client, run_id, "batch-acc", "acc", range(10))
        _log(client, run_id, "batch-loss-more", "loss", range(10, 15))
        held[0].continue_()
        expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)
        expect(page.locator('figure[data-key="acc"]')).to_have_attribute(
            "data-points", "10", timeout=TIMEOUT_MS
        )
        # A chart drawn before the stream opened follows what it missed too.
        expect(page.locator('figure[data-key="loss"]')).to_have_attribute(
            "data-points", "15", timeout=TIMEOUT_MS
        )
        watch.assert_clean()
