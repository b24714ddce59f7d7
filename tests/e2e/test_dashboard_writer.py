"""The TensorBoard drop-in's ``add_scalars`` in the browser (issue 17): a script's
``add_scalars("acc", {"train": ..., "val": ...})`` is one chart on the run's page, both
metrics overlaid, under the strict CSP with no console error (browser.py); the other
metrics keep a chart each."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_sdk import TENSORBOARD, sdk_env

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
