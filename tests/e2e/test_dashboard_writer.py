"""The TensorBoard drop-in's ``add_scalars`` in the browser (issue 17): a script's
``add_scalars("acc", {"train": ..., "val": ...})`` is one chart on the run's page, both
metrics overlaid, under the strict CSP with no console error (browser.py); the other
metrics keep a chart each. The compare view draws a group as one chart too, and a group
whose metrics begin while the run's page is open becomes one chart, live."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_sdk import TENSORBOARD, discovery_key, sdk_env

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]


def test_add_scalars_is_one_chart_with_a_line_per_tag(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory()
    script = tmp_path / "tb.py"
    script.write_text(TENSORBOARD)
    result = subprocess.run(
        [sys.executable, str(script)], env=sdk_env(server, tmp_path), capture_output=True,
        text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # its runs/exp1 there, not in the checkout
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    _, link = startup_link(server)
    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{run_id}")
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        figures = page.locator("#charts figure")
        titles = [figures.nth(i).locator("h3").inner_text() for i in range(figures.count())]
        assert sorted(titles) == ["acc", "hparam/score", "loss/train"]
        group = page.locator("#charts figure", has=page.locator("h3", has_text="acc"))
        assert json.loads(group.get_attribute("data-keys") or "") == ["acc/train", "acc/val"]
        expect(group).to_have_attribute("data-points", "20")
        legend = group.locator(".u-legend .u-series")
        expect(legend).to_have_count(3)  # the step, then a line per tag
        expect(legend.nth(1)).to_contain_text("acc/train")
        expect(legend.nth(2)).to_contain_text("acc/val")
        watch.assert_clean()


def _column(steps: range, scale: float) -> dict[str, list[float]]:
    return {
        "steps": list(steps),
        "times": [1.7e9 + s for s in steps],
        "values": [scale / (s + 1) for s in steps],
    }


def _log(client: httpx.Client, run_id: str, batch: str, metrics: dict[str, Any]) -> None:
    sent = client.post(
        f"/api/v1/runs/{run_id}/metrics", json={"batch_id": batch, "metrics": metrics}
    )
    assert sent.status_code == 200, sent.text


def _signed_in(browser: Any, server: ServerProcess) -> Any:
    _, link = startup_link(server)
    page, watch = browser.new_page()
    page.goto(link)
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
    return page, watch


def test_a_group_is_one_chart_in_the_compare_view(server_factory: Start) -> None:
    """Each run's ``acc`` group, one chart: a line per run and metric, labelled with both;
    the picker offers the group, not its metrics apart."""
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "cmp"}).status_code == 201
        ids = []
        for name, members in (("first", ["acc/train", "acc/val"]), ("second", ["acc/train"])):
            config = {"_charts": {"acc": members}}
            run = client.post("/api/v1/projects/cmp/runs", json={"name": name, "config": config})
            ids.append(run.json()["id"])
            metrics = {k: _column(range(10), 1.0) for k in members} | {
                "loss": _column(range(10), 2.0)
            }
            _log(client, ids[-1], f"batch-{name}", metrics)
    with chromium() as browser:
        page, watch = _signed_in(browser, server)
        page.goto(f"{server.url}/compare?run={ids[0]}&run={ids[1]}")
        expect(page.locator("#charts")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        boxes = page.locator("#metric-picker > label input")
        assert [boxes.nth(i).get_attribute("value") for i in range(boxes.count())] == [
            "acc",
            "loss",
        ]
        group = page.locator('#charts figure[data-key="acc"]')
        expect(group.locator("h3")).to_have_text("acc")
        legend = group.locator(".u-legend .u-series")
        expect(legend).to_have_count(4)  # the step, then first's two lines and second's one
        assert [legend.nth(i).locator(".u-label").inner_text() for i in (1, 2, 3)] == [
            "first · acc/train", "first · acc/val", "second · acc/train",
        ]  # fmt: skip
        expect(group).to_have_attribute("data-points", "10")
        page.locator('#metric-picker input[value="acc"]').uncheck()
        expect(group).to_have_count(0)
        page.locator('#metric-picker input[value="acc"]').check()
        expect(page.locator('#charts figure[data-key="acc"] .u-legend .u-series')).to_have_count(4)
        watch.assert_clean()


def test_a_group_that_begins_while_the_page_is_open_is_one_live_chart(
    server_factory: Start,
) -> None:
    """The metrics come first and the group's name after them (the worst order): the page
    puts them in one chart when the config's change arrives, follows the chart's tail, and
    a metric added to the group later joins the same chart."""
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "grow"}).status_code == 201
        run_id = client.post("/api/v1/projects/grow/runs", json={"name": "r"}).json()["id"]
        with chromium() as browser:
            page, watch = _signed_in(browser, server)
            page.goto(f"{server.url}/runs/{run_id}")
            expect(page.locator("body")).to_have_attribute(
                "data-stream", "open", timeout=TIMEOUT_MS
            )
            figures = page.locator("#charts figure")
            pair = {"acc/train": _column(range(10), 1.0), "acc/val": _column(range(10), 0.5)}
            _log(client, run_id, "batch-one", pair)
            expect(figures).to_have_count(2, timeout=TIMEOUT_MS)  # no group named yet
            named = client.patch(f"/api/v1/runs/{run_id}",
                                 json={"config": {"_charts": {"acc": list(pair)}}})  # fmt: skip
            assert named.status_code == 200, named.text
            expect(figures).to_have_count(1, timeout=TIMEOUT_MS)
            group = figures.first
            expect(group.locator("h3")).to_have_text("acc")
            expect(group).to_have_attribute("data-points", "10", timeout=TIMEOUT_MS)
            asked: list[str] = []  # the service worker makes the requests: the context's
            page.context.on("request", lambda request: asked.append(request.url))
            later = {k: _column(range(10, 20), 1.0) for k in pair}
            _log(client, run_id, "batch-two", later)
            expect(group).to_have_attribute("data-points", "20", timeout=TIMEOUT_MS)
            # The group's lines followed their tails (chart.js extendCharts), in one request.
            tails = [u for u in asked if "/history?" in u and "after_step=9" in u]
            assert any("acc%2Ftrain" in u and "acc%2Fval" in u for u in tails), asked

            grown = {"_charts": {"acc": [*pair, "acc/test"]}}
            assert client.patch(f"/api/v1/runs/{run_id}", json={"config": grown}).status_code == 200
            _log(client, run_id, "batch-three", {"acc/test": _column(range(20), 0.1)})
            legend = page.locator("#charts figure .u-legend .u-series")
            expect(legend).to_have_count(4, timeout=TIMEOUT_MS)  # step, three lines
            expect(figures).to_have_count(1)
            keys = json.loads(figures.first.get_attribute("data-keys") or "")
            assert keys == ["acc/train", "acc/val", "acc/test"]
            watch.assert_clean()
