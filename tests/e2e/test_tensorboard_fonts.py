"""TensorBoard's page asks for its fonts at the origin's root (``/font-roboto/*.woff2``,
written into its index.html whatever ``--path_prefix`` says). TensorBoard's origin answers
them from the TensorBoard that the visitor's cookie opens, so the page loads with no
console error, and answers nothing more to a visitor without one (docs/tensorboard.md)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Response, expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import run_cli, start_server
from tests.e2e.test_tensorboard import TIMEOUT_MS, open_link, tb_origin
from tests.support.tb_events import write_scalars

pytestmark = pytest.mark.e2e


def test_tensorboard_fonts_load_from_the_origins_root_for_its_visitor_only(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path)  # the loopback default: plain HTTP
    try:
        write_scalars(tmp_path / "logs" / "run1")
        origin = tb_origin(server)
        made = run_cli("tensorboard", "--logdir", str(tmp_path / "logs"), data_dir=server.data_dir)
        assert made.returncode == 0, made.stderr
        with chromium() as browser:
            page, watch = browser.new_page()
            fonts: list[Response] = []
            failed: list[str] = []

            def seen(response: Response) -> None:
                if "/font-roboto/" in response.url:
                    fonts.append(response)
                if response.status >= 400:
                    failed.append(f"{response.status} {response.url}")

            page.on("response", seen)
            page.goto(open_link(made.stdout))
            page.wait_for_url(re.compile(r"/tb/[0-9a-f]+/"), timeout=TIMEOUT_MS)
            page.goto(f"{page.url.split('#', 1)[0]}#scalars")
            expect(page.get_by_text("train/loss").locator("visible=true").first).to_be_visible(
                timeout=TIMEOUT_MS
            )
            page.evaluate("document.fonts.ready.then(() => true)")
            assert fonts, "the page asked for no font: nothing was tested"
            assert all(f.url.startswith(f"{origin}/font-roboto/") for f in fonts)
            assert [f.status for f in fonts] == [200] * len(fonts), failed
            assert {f.header_value("content-type") for f in fonts} == {"font/woff2"}
            assert not failed, failed
            errors = [line for line in watch.console if line.startswith("error")]
            assert not errors, errors
            font_path = fonts[0].url.removeprefix(origin)
        # A visitor with no TensorBoard cookie learns nothing more there than before.
        with httpx.Client(base_url=origin, timeout=10) as stranger:
            assert stranger.get(font_path).status_code == 404
            assert stranger.get(f"/tb/x{font_path}").status_code == 404
    finally:
        server.stop()
