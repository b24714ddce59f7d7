"""Another web service on the same host, in headless Chromium against a real server (S6).

Cookies ignore ports: a signed-in user who opens any other service on the host (another
user's Jupyter on a shared training box) sends it safeboard's session cookie, under TLS
too, and that service may set a cookie of the same name for safeboard. Here an "evil"
service on another port of 127.0.0.1 records every cookie it receives and can set one:

- hijack: it replays every cookie it got to safeboard's API and pages, and gets 401s and
  redirects to the sign-in form, never data;
- tossing (login CSRF): it plants the attacker's own valid session in the victim's
  cookie jar under safeboard's cookie name; the victim's next visit is signed out, never
  signed in as the attacker, and signing in again works.

Both on plain HTTP and under TLS (where the evil service speaks HTTPS, so that the
browser hands it the Secure ``__Host-`` cookie and lets it set one).

The binding needs the dashboard's service worker; a browser without one is told so at
sign-in, before any session is made or a startup link spent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID
from playwright.sync_api import Page, expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, run_cli
from tests.e2e.test_browser_login import (
    ON_LOGIN_PAGE,
    PASSWORD,
    TIMEOUT_MS,
    add_user_with_password,
    startup_link,
    submit_login,
)
from tests.e2e.test_identity_cli import bearer, create_key
from tests.support.sessions import BINDING_HEADER

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
NOTEBOOK = b"<!doctype html><title>notebook</title><p>Someone's notebook server.</p>"


@dataclass
class EvilService:
    """A web service on another port of the same host: it keeps every Cookie header it is
    sent and, once told to, answers /toss with a Set-Cookie of its choosing."""

    url: str
    spki: str | None
    cookies: list[str] = field(default_factory=list)
    toss: str | None = None

    def session_cookies(self, name: str) -> list[str]:
        return [header for header in self.cookies if f"{name}=" in header]


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notebook")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "evil-cert.pem", tmp_path / "evil-key.pem"
    cert_path.write_bytes(certificate.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return context, base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextmanager
def evil_service(tmp_path: Path, *, tls: bool) -> Iterator[EvilService]:
    state: list[EvilService] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            evil = state[0]
            evil.cookies.append(self.headers.get("Cookie", ""))
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(NOTEBOOK)))
            if evil.toss is not None and self.path.startswith("/toss"):
                self.send_header("Set-Cookie", evil.toss)
            self.end_headers()
            self.wfile.write(NOTEBOOK)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    spki = None
    if tls:
        context, spki = _self_signed(tmp_path)
        # The handshake happens in each request's thread, not in the accept loop.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    port = server.server_address[1]
    state.append(EvilService(f"{'https' if tls else 'http'}://127.0.0.1:{port}", spki))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def cookie_of(page: Page, name: str) -> str | None:
    found = [c["value"] for c in page.context.cookies() if c["name"] == name]
    return found[0] if found else None


def attacker_session(server: ServerProcess, cookie_name: str) -> str:
    """Mallory signs in through the API, keeps a project of his own there, and hands back
    his session id: a valid session, his to plant in someone else's browser."""
    add_user_with_password(server, "mallory")
    with server.client() as client:
        signed_in = client.post(
            "/api/v1/auth/login", json={"username": "mallory", "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        body = signed_in.json()
        headers = {"X-CSRF-Token": body["csrf_token"], "Origin": server.url}
        if "binding" in body:  # he knows his own binding, of course
            headers[BINDING_HEADER] = body["binding"]
        made = client.post("/api/v1/projects", json={"name": "mallory-trap"}, headers=headers)
        assert made.status_code == 201, made.text
        return str(client.cookies[cookie_name])


def replay_refused(server: ServerProcess, cookie_header: str) -> None:
    """Whatever the evil service was sent, safeboard gives it nothing for it."""
    cookie = {"Cookie": cookie_header}
    with server.client() as client:
        for path in ("/api/v1/auth/session", "/api/v1/projects", "/api/v1/keys"):
            answer = client.get(path, headers=cookie)
            assert answer.status_code == 401, (path, answer.status_code, answer.text)
            assert "alice" not in answer.text
        page = client.get("/account", headers={**cookie, "Accept": "text/html"})
        assert page.status_code == 303, page.text
        assert page.headers["location"].startswith("/login?next=")
        key = client.post(
            "/api/v1/keys",
            json={"name": "stolen"},
            headers={**cookie, "Origin": server.url, "X-CSRF-Token": "0" * 64},
        )
        assert key.status_code == 401, key.text


@contextmanager
def victim_at_the_notebook(
    server_factory: Start, tmp_path: Path, *, tls: bool
) -> Iterator[tuple[ServerProcess, EvilService, Page, str]]:
    """Alice signs in to safeboard in Chromium, then opens the notebook server on another
    port of the host. Yields the server, the notebook, her page and the cookie's name."""
    server = server_factory(*(["--tls"] if tls else []))
    assert server.tls is tls
    add_user_with_password(server, "alice")
    with evil_service(tmp_path, tls=tls) as evil:
        flags = []
        if tls:  # Chromium trusts exactly these two keys: safeboard's and the notebook's
            trusted = ",".join([spki_sha256(server.port), str(evil.spki)])
            flags.append(f"--ignore-certificate-errors-spki-list={trusted}")
        with chromium(*flags) as browser:
            page, watch = browser.new_page()
            page.goto(f"{server.url}/login")
            assert submit_login(page, "alice", PASSWORD) == 200
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")
            [session] = [c for c in page.context.cookies() if "safeboard" in c["name"]]

            # The browser sends the session cookie to the other port, TLS or not.
            page.goto(f"{evil.url}/notebook")
            expect(page.locator("p")).to_have_text("Someone's notebook server.")
            stolen = evil.session_cookies(session["name"])
            assert stolen, f"the notebook got no {session['name']} cookie: {evil.cookies}"
            assert session["value"] in stolen[0]
            yield server, evil, page, session["name"]
            watch.assert_clean()


TRANSPORTS = pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])


@TRANSPORTS
def test_cookies_another_port_received_open_nothing(
    server_factory: Start, tmp_path: Path, tls: bool
) -> None:
    with victim_at_the_notebook(server_factory, tmp_path, tls=tls) as (server, evil, page, _):
        # Hijack: replaying everything the notebook got gives it nothing.
        replayed = [header for header in evil.cookies if header]
        assert replayed
        for header in replayed:
            replay_refused(server, header)

        # The victim is still signed in: the replays cost her nothing.
        page.goto(f"{server.url}/account")
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")


@TRANSPORTS
def test_a_session_tossed_from_another_port_signs_nobody_in(
    server_factory: Start, tmp_path: Path, tls: bool
) -> None:
    with victim_at_the_notebook(server_factory, tmp_path, tls=tls) as (server, evil, page, name):
        # Tossing: the notebook plants the attacker's valid session id under safeboard's
        # cookie name (it may: cookies ignore ports).
        mallory = attacker_session(server, name)
        secure = "; Secure" if tls else ""
        evil.toss = f"{name}={mallory}; Path=/; HttpOnly; SameSite=Lax{secure}"
        page.goto(f"{evil.url}/toss")
        expect(page.locator("p")).to_have_text("Someone's notebook server.")
        assert cookie_of(page, name) == mallory, "the toss did not reach the cookie jar"

        # Back on safeboard: signed out, never signed in as mallory.
        page.goto(f"{server.url}/account")  # (a redirect from the server, if any)
        assert "mallory" not in page.content()
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/")
        page.wait_for_url(ON_LOGIN_PAGE, timeout=TIMEOUT_MS)
        assert "mallory" not in page.content()
        from_page = page.evaluate(
            """async () => {
              const answer = await fetch("/api/v1/projects", {credentials: "same-origin"});
              return [answer.status, await answer.text()];
            }"""
        )
        assert from_page[0] == 401, from_page
        assert "mallory-trap" not in from_page[1]

        # At worst a sign-out: signing in again gives the victim her own session back.
        assert submit_login(page, "alice", PASSWORD) == 200
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")
        assert cookie_of(page, name) not in (None, mallory)
        page.goto(f"{server.url}/account")
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")


@pytest.mark.parametrize("how", ["blocked", "absent"])
def test_without_service_workers_sign_in_says_why_and_spends_nothing(
    server_factory: Start, how: str
) -> None:
    server = server_factory()
    add_user_with_password(server, "alice")
    user, link = startup_link(server)
    with chromium() as browser:
        if how == "blocked":  # registering does nothing (Playwright's switch for it)
            page, _ = browser.new_page(service_workers="block")
        else:  # no service workers at all, as in some private windows
            page, _ = browser.new_page()
            page.context.add_init_script("delete Navigator.prototype.serviceWorker;")
        page.goto(link)
        status = page.locator("#status")
        expect(status).to_contain_text("needs service workers", timeout=TIMEOUT_MS)
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(status).to_contain_text("cannot sign in to safeboard", timeout=TIMEOUT_MS)
        assert page.context.cookies() == []

        # Nothing was spent: the same link signs in where service workers run.
        working, _ = browser.new_page()
        working.goto(link)
        working.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(working.get_by_test_id("who")).to_have_text(f"Signed in as {user} (admin)")
    assert "POST /api/v1/auth/login" not in server.log


def test_a_hard_reload_lands_back_on_the_page_signed_in(server_factory: Start) -> None:
    """Shift+Reload loads a page past the service worker, so without the binding: the page
    sends the browser to the sign-in form, which finds the session still good (with the
    stored binding) and goes back."""
    server = server_factory()
    add_user_with_password(server, "alice")
    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(f"{server.url}/login")
        assert submit_login(page, "alice", PASSWORD) == 200
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/account")
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")

        visited: list[str] = []
        page.on("framenavigated", lambda frame: visited.append(frame.url))
        cdp = page.context.new_cdp_session(page)
        cdp.send("Page.reload", {"ignoreCache": True})  # what Shift+Reload does
        page.wait_for_url(f"{server.url}/account", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("who")).to_have_text("Signed in as alice (member)")
        assert f"{server.url}/login?next=%2Faccount" in visited, visited
        assert page.url == f"{server.url}/account"
        watch.assert_clean()


def test_a_live_stream_through_the_worker_reconnects_then_stops_when_refused(
    server_factory: Start,
) -> None:
    """Event streams pass through the service worker (app.js: liveStream). When the server
    goes away the page says it is reconnecting; when it is back but the session has
    ended, the stream is refused and the page says to reload, with no retries."""
    server = server_factory(name="live")
    add_user_with_password(server, "alice")
    key, _ = create_key(server, "--user", "alice", "--name", "t", "--scope", "write")
    with server.client() as client:
        made = client.post("/api/v1/projects", json={"name": "live"}, headers=bearer(key))
        assert made.status_code == 201, made.text
    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(f"{server.url}/login?next=%2Fprojects%2Flive")
        assert submit_login(page, "alice", PASSWORD) == 200
        page.wait_for_url(f"{server.url}/projects/live", timeout=TIMEOUT_MS)
        body = page.locator("body")
        expect(body).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)

        server.stop()
        expect(body).to_have_attribute("data-stream", "reconnecting", timeout=TIMEOUT_MS)
        ended = run_cli("user", "revoke-sessions", "alice", data_dir=server.data_dir)
        assert ended.returncode == 0, ended.stderr
        server_factory(name="live", port=server.port)  # back, but her session is gone
        expect(body).to_have_attribute("data-stream", "closed", timeout=20_000)
        expect(page.locator("#live")).to_contain_text("reload the page")
        watch.console[:] = [c for c in watch.console if "ERR_CONNECTION_REFUSED" not in c]
        watch.assert_clean()
