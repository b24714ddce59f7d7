"""The home page's first steps say who can reach the server: one that listens on this
machine only says so and how to open it to others (not a `safeboard login` that no other
machine could use); one with a public address keeps the login hint for other machines
(headless Chromium against real servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_dashboard import Start

pytestmark = pytest.mark.e2e

PUBLIC = "https://ml.example.test:9443"


def empty_home(page: Page, server: ServerProcess, link: str) -> str:
    """The admin's home page with no project yet, signed in by the startup ``link``: the
    text of its first steps."""
    page.goto(link)
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
    expect(page.locator("#no-projects")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("local-hint")).to_be_visible(timeout=TIMEOUT_MS)
    return page.locator("#no-projects").inner_text()


def test_a_loopback_server_says_it_listens_here_only(server_factory: Start) -> None:
    server = server_factory()
    with chromium() as browser:
        page, _ = browser.new_page()
        text = empty_home(page, server, startup_link(server)[1])
        loopback = page.get_by_test_id("loopback-hint")
        expect(loopback).to_be_visible()
        expect(loopback).to_contain_text("listens on this machine only")
        expect(loopback).to_contain_text("safeboard server --host 0.0.0.0")
        expect(loopback).to_contain_text("HTTPS")
        assert "From any other machine" not in text
        # Another OS user of this machine can still sign in on loopback: said as such.
        login = page.get_by_test_id("login-hint")
        expect(login).to_contain_text("As another user of this machine")
        expect(login).to_contain_text(f"safeboard login {server.url}")


def test_a_server_with_a_public_address_keeps_the_login_hint(
    server_factory: Start, tmp_path: Path
) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(f'[server]\npublic_url = "{PUBLIC}"\n')
    server = server_factory("--tls")
    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, _ = browser.new_page()
        # The startup link names the public address; this test's browser reaches the
        # server on loopback.
        link = (server.data_dir / "login-link").read_text().strip()
        assert link.startswith(f"{PUBLIC}/login#token=")
        text = empty_home(page, server, server.url + link.removeprefix(PUBLIC))
        assert "From any other machine" in text
        expect(page.get_by_test_id("login-hint")).to_contain_text(f"safeboard login {PUBLIC}")
        expect(page.get_by_test_id("loopback-hint")).to_have_count(0)
