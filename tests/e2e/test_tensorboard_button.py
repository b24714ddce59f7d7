"""The dashboard's "TensorBoard" button, as a team meets it: a real server over TLS, event
files written by tensorboardX imported with `safeboard import tensorboard`, a member with
a viewer grant who clicks the button on the run page and on the compare view and sees
TensorBoard's scalars dashboard (the real TensorBoard, on copies of the runs' own files),
and another member without a grant who is refused; no CSP violation or console error on
safeboard's pages (chromium() fails the test on any in the watched pages)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from safeboard.sdk.tbimport import run_id_for
from tests.e2e.browser import Chromium, chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_tensorboard import TIMEOUT_MS, tb_origin

pytestmark = pytest.mark.e2e

INVITE = re.compile(r"https?://\S+/invite#token=\S+")
PASSWORD = "a-long-and-unusual-passphrase-42"


def tensorboardx_scalars(directory: Path, tag: str) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(directory))
    for step in range(10):
        writer.add_scalar(tag, 1.0 / (step + 1), step)
    writer.close()


def cli_ok(server: ServerProcess, *args: str) -> str:
    done = run_cli(*args, data_dir=server.data_dir)
    assert done.returncode == 0, done.stderr
    return done.stdout


def member(browser: Chromium, server: ServerProcess, name: str) -> Page:
    """A member, invited by the CLI, signed in in a page of their own."""
    cli_ok(server, "user", "add", name)
    found = INVITE.search(cli_ok(server, "user", "invite", name))
    assert found, "user invite prints a link"
    page, _ = browser.new_page()
    page.goto(found.group(0))
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat it").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
    return page


def open_from(page: Page) -> Page:
    """Click the button; the new tab, once in TensorBoard, on its scalars dashboard."""
    with page.expect_popup(timeout=TIMEOUT_MS) as popup:
        page.get_by_test_id("open-tensorboard").click()
    board = popup.value
    board.wait_for_url(re.compile(r"/tb/[0-9a-f]+/"), timeout=TIMEOUT_MS)
    assert "ticket" not in board.url
    assert board.evaluate("window.opener") is None  # no opener: cut from safeboard's page
    board.goto(f"{board.url.split('#', 1)[0]}#scalars")
    return board


def test_the_button_opens_tensorboard_over_runs_a_member_may_read(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--tls")
    try:
        logs = tmp_path / "logs"
        tensorboardx_scalars(logs / "lr0.1", "train/loss")
        tensorboardx_scalars(logs / "lr0.2", "train/loss")
        env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
        done = run_cli("import", "tensorboard", str(logs), "-p", "tb", env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        first, second = (run_id_for("tb", logs / name) for name in ("lr0.1", "lr0.2"))
        spki = spki_sha256(int(tb_origin(server).rsplit(":", 1)[1]))
        with chromium(f"--ignore-certificate-errors-spki-list={spki}") as browser:
            bob = member(browser, server, "bob")
            carol = member(browser, server, "carol")
            cli_ok(server, "grant", "tb", "bob", "viewer")

            # Bob, a viewer: the button on the run page opens TensorBoard on the run.
            bob.goto(f"{server.url}/runs/{first}")
            board = open_from(bob)
            expect(board.get_by_text("train/loss").locator("visible=true").first).to_be_visible(
                timeout=TIMEOUT_MS
            )
            expect(board.get_by_text("lr0.1").locator("visible=true").first).to_be_visible(
                timeout=TIMEOUT_MS
            )
            expect(bob.locator("#tensorboard-status")).to_have_text(
                "TensorBoard is open in a new tab."
            )
            # The compare view: over both runs.
            bob.goto(f"{server.url}/compare?run={first}&run={second}")
            both = open_from(bob)
            expect(both.get_by_text("train/loss").locator("visible=true").first).to_be_visible(
                timeout=TIMEOUT_MS
            )
            for name in ("lr0.1", "lr0.2"):
                expect(both.get_by_text(name).locator("visible=true").first).to_be_visible(
                    timeout=TIMEOUT_MS
                )
            assert both.url.split("/tb/", 1)[1] != board.url.split("/tb/", 1)[1]

            # Carol, no grant: no run page, and the API refuses her session (CSRF and
            # all) as it refuses a run that does not exist.
            page = carol.goto(f"{server.url}/runs/{first}")
            assert page is not None
            assert page.status == 404
            carol.goto(f"{server.url}/account")  # a page that carries her CSRF token
            answers = carol.evaluate(
                """async (runs) => {
                  const csrf = document.querySelector('meta[name="csrf-token"]').content;
                  const out = [];
                  for (const ids of runs) {
                    const r = await fetch('/api/v1/tensorboards', {method: 'POST',
                      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                      body: JSON.stringify({runs: ids})});
                    out.push([r.status, (await r.json()).error.message]);
                  }
                  return out;
                }""",
                [[first], ["0" * 32], [first, second]],
            )
            assert [status for status, _ in answers] == [404, 404, 404], answers
            assert len({message for _, message in answers}) == 1
            # Bob's TensorBoard is not Carol's: 404 on his instance's path.
            refused = carol.goto(board.url.split("#", 1)[0])
            assert refused is not None
            assert refused.status == 404
    finally:
        server.stop()


def test_same_origin_mode_serves_tensorboard_under_tb(tmp_path: Path) -> None:
    """``tensorboard.same_origin``: one port; the button's tab opens TensorBoard under
    ``/tb/`` of safeboard's origin and shows the scalars, its fonts (asked for at the
    root) loaded; safeboard's pages keep their CSP (no 'unsafe-eval') and raise no
    violation."""
    server = start_server(
        tmp_path, "--tls", settings={"SAFEBOARD__TENSORBOARD__SAME_ORIGIN": "true"}
    )
    try:
        assert not [line for line in server.banner if "TensorBoard's origin" in line]
        assert any(f"TensorBoard under {server.url}/tb/" in line for line in server.banner)
        logs = tmp_path / "logs"
        tensorboardx_scalars(logs / "lr0.1", "train/accuracy")
        env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
        done = run_cli("import", "tensorboard", str(logs), "-p", "tb", env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        run_id = run_id_for("tb", logs / "lr0.1")
        spki = spki_sha256(server.port)
        with chromium(f"--ignore-certificate-errors-spki-list={spki}") as browser:
            admin, _ = browser.new_page()
            sign_in = next(line for line in server.banner if "sign in as" in line)
            admin.goto(sign_in.rsplit(" ", 1)[1])
            admin.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            shown = admin.goto(f"{server.url}/runs/{run_id}")
            assert shown is not None
            policy = shown.headers["content-security-policy"]
            assert "unsafe-eval" not in policy
            assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
            fonts: list[str] = []
            admin.context.on(
                "response",
                lambda r: fonts.append(f"{r.status} {r.url}") if "/font-roboto/" in r.url else None,
            )
            board = open_from(admin)
            assert board.url.startswith(f"{server.url}/tb/")
            # TensorBoard keeps hidden copies of a tag's name (its other dashboards): the
            # first visible one is the scalars card's.
            shown_tag = board.get_by_text("train/accuracy").locator("visible=true").first
            expect(shown_tag).to_be_visible(timeout=TIMEOUT_MS)
            board.evaluate("document.fonts.ready.then(() => true)")
            assert fonts, "TensorBoard asked for no font: nothing was tested"
            assert all(f.startswith(f"200 {server.url}/font-roboto/") for f in fonts), fonts
            (cookie,) = [c for c in board.context.cookies() if c["name"].startswith("__Host-sbtb-")]
            assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    finally:
        server.stop()
