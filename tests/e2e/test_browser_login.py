"""Signing in as a new user would, in headless Chromium against a real server (S3-S7).

The startup link printed at start signs the OS user in and leaves no trace of its token
in the address bar, the history or the server log; the session cookie is out of reach of
page scripts; signing out ends the session; the link works once. Passwords set with the
CLI sign in through the form, and repeated wrong ones lock the account with 429.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.e2e.browser import chromium, navigation_history, spki_sha256
from tests.e2e.conftest import ServerProcess, cli_env, run_cli
from tests.support.sessions import BINDING_HEADER, session_cookie_name

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
SIGN_IN_LINE = re.compile(r"^  sign in as (\S+): (\S+)$")
ON_LOGIN_PAGE = re.compile(r"/login(\?.*)?$")
PASSWORD = "plum-Tractor-harbour-57-quietly"
TIMEOUT_MS = 10_000
# What the sign-in page keeps for the service worker (web/static/api.js), read in the page.
STORED_BINDING = """async () => {
  const found = await (await caches.open("safeboard-binding"))
    .match("/.well-known/safeboard-binding");
  return found ? found.text() : null;
}"""


def startup_link(server: ServerProcess) -> tuple[str, str]:
    """The admin's name and the sign-in link from the start banner."""
    found = [m for m in map(SIGN_IN_LINE.match, server.banner) if m]
    assert len(found) == 1, server.banner
    user, link = found[0].groups()
    assert link.startswith(f"{server.url}/login#token="), link
    assert (server.data_dir / "login-link").read_text().strip() == link
    return user, link


def token_of(link: str) -> str:
    return link.split("#token=", 1)[1]


def assert_redirected_to_login(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("who")).to_have_count(0)


def assert_no_token_anywhere(page: Page, token: str) -> None:
    assert "token=" not in page.url
    assert token not in page.evaluate("location.href + document.referrer")
    history = navigation_history(page)
    assert not [url for url in history if token in url or "token=" in url], history


def add_user_with_password(server: ServerProcess, name: str, role: str = "member") -> None:
    added = run_cli("user", "add", name, "--role", role, data_dir=server.data_dir)
    assert added.returncode == 0, added.stderr
    set_password = subprocess.run(
        [sys.executable, "-m", "safeboard", "user", "set-password", name, "--password-stdin"],
        input=f"{PASSWORD}\n",
        env=cli_env(server.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert set_password.returncode == 0, set_password.stderr
    assert PASSWORD not in set_password.stdout + set_password.stderr


def submit_login(page: Page, username: str, password: str) -> int:
    """Fill the /login form, submit it, and return the API's status for that attempt."""
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response("**/api/v1/auth/login", timeout=TIMEOUT_MS) as answer:
        page.get_by_role("button", name="Sign in").click()
    return answer.value.status


def test_startup_link_signs_in_once_and_leaves_no_token_behind(server_factory: Start) -> None:
    server = server_factory()
    user, link = startup_link(server)
    token = token_of(link)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_have_text(f"Signed in as {user} (admin)")

        # The token left the address bar and the back/forward list; going back shows none.
        assert_no_token_anywhere(page, token)
        assert page.evaluate("history.length") <= 2  # the tab's blank start page and "/"
        page.go_back()
        assert token not in page.url
        page.go_forward()
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        # The session cookie: `safeboard-<port>` on plain HTTP, HttpOnly, SameSite=Lax,
        # host-only.
        cookies = page.context.cookies()
        assert [c["name"] for c in cookies] == [f"safeboard-{server.port}"]
        cookie = cookies[0]
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is False
        assert cookie["sameSite"] == "Lax"
        assert (cookie["domain"], cookie["path"]) == ("127.0.0.1", "/")
        assert page.evaluate("document.cookie") == ""  # out of reach of page scripts
        watch.assert_clean()

        # The cookie alone is not a session: its binding lives in the page's origin.
        session_cookie = {"Cookie": f"safeboard-{server.port}={cookie['value']}"}
        binding = page.evaluate(STORED_BINDING)
        assert isinstance(binding, str)
        assert len(binding) >= 43
        with server.client() as client:  # the same session works for the API
            alone = client.get("/api/v1/auth/session", headers=session_cookie)
            assert alone.status_code == 401, alone.text
            who = client.get(
                "/api/v1/auth/session", headers={**session_cookie, BINDING_HEADER: binding}
            )
            assert who.status_code == 200, who.text
            assert who.json()["user"]["username"] == user

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        assert page.context.cookies() == []
        assert page.evaluate(STORED_BINDING) is None  # sign-out forgot the binding too
        assert_redirected_to_login(page, server.url)
        with server.client() as client:  # logout deleted the session row
            gone = client.get(
                "/api/v1/auth/session", headers={**session_cookie, BINDING_HEADER: binding}
            )
            assert gone.status_code == 401

        # The same link in a fresh browser context: refused, and nothing is signed in.
        again, _ = browser.new_page()
        again.goto(link)
        expect(again.locator("#status")).to_contain_text("did not work")
        assert "token=" not in again.url
        assert again.context.cookies() == []
        assert_redirected_to_login(again, server.url)

    # The fragment never reached the server: only the banner line carries the token.
    leaked = [line for line in server.log.splitlines() if token in line]
    assert leaked == [f"  sign in as {user}: {link}"], leaked


def test_startup_link_under_tls_sets_a_host_prefixed_secure_cookie(server_factory: Start) -> None:
    server = server_factory("--tls")
    assert server.tls
    user, link = startup_link(server)
    assert link.startswith("https://127.0.0.1:")

    # Chromium trusts exactly the key the server presents, nothing else.
    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, _ = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_have_text(f"Signed in as {user} (admin)")
        assert_no_token_anywhere(page, token_of(link))

        cookies = page.context.cookies()
        assert [c["name"] for c in cookies] == [session_cookie_name(server.url)]
        assert cookies[0]["name"] == f"__Host-safeboard-{server.port}"
        cookie = cookies[0]
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Lax")
        assert (cookie["domain"], cookie["path"]) == ("127.0.0.1", "/")  # no Domain attribute
        assert page.evaluate("document.cookie") == ""

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        assert page.context.cookies() == []
        assert_redirected_to_login(page, server.url)

    # Without that pin the generated certificate is not trusted: the check above is real.
    with chromium() as untrusting:
        page, _ = untrusting.new_page()
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"{server.url}/login")


def test_password_set_with_the_cli_signs_in_through_the_form(server_factory: Start) -> None:
    server = server_factory()
    add_user_with_password(server, "alice")

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(f"{server.url}/")  # not signed in: sent to the login form
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        assert submit_login(page, "alice", PASSWORD) == 200
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")
        assert [c["name"] for c in page.context.cookies()] == [f"safeboard-{server.port}"]
        assert page.evaluate("document.cookie") == ""
        watch.assert_clean()


def test_five_wrong_passwords_lock_the_form_and_the_api_with_429(server_factory: Start) -> None:
    server = server_factory()
    add_user_with_password(server, "alice")

    with chromium() as browser:
        page, _ = browser.new_page()
        page.goto(f"{server.url}/login")
        status = page.locator("#status")
        for attempt in range(5):
            assert submit_login(page, "alice", f"wrong-password-{attempt}-xyz") == 401
            expect(status).to_have_text("invalid user name or password")
        # The sixth attempt, even with the right password, is refused while locked.
        assert submit_login(page, "alice", PASSWORD) == 429
        expect(status).to_contain_text("too many")
        assert page.context.cookies() == []
        assert ON_LOGIN_PAGE.search(page.url)

    with server.client() as client:
        locked = client.post("/api/v1/auth/login", json={"username": "ALICE", "password": PASSWORD})
    assert locked.status_code == 429, locked.text
    assert 1 <= int(locked.headers["retry-after"]) <= 30  # auth.login_backoff_seconds
    assert "too many" in locked.json()["error"]["message"]
    assert "set-cookie" not in locked.headers
