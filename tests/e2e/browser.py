"""Headless Chromium for end-to-end tests, driven by Playwright.

The browser is Debian's ``chromium`` package (``scripts/install-system-deps`` installs
it); Playwright's own browser download is never used. Each launch gets a fresh, empty
user-data directory, and every page is watched: a Content Security Policy violation, a
"Refused to ..." console message or an uncaught page error fails the test (S11: the pages
run no inline script and no eval, so a violation is a bug, not noise).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Error, Page

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "PageWatch",
    "chromium",
    "navigation_history",
    "spki_sha256",
]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# closed network refuses; --no-sandbox because the tests may run as root.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_BAD_CONSOLE = ("Content Security Policy", "Refused to")
# Also report violations that reach no console message: an init script runs before any
# page script and is exempt from the page's CSP.
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`Content Security Policy violation: ${event.violatedDirective} ` +
                `blocked ${event.blockedURI || "inline"} in ${event.sourceFile || "?"}`);
});
"""


@dataclass
class PageWatch:
    """What the pages of one browser context said: console messages and uncaught errors."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    # alert/confirm/prompt boxes: an injected `alert(1)` that ran would show up here.
    dialogs: list[str] = field(default_factory=list)
    accept_dialogs: bool = False  # set by a test that clicks a button that confirms

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Dialog) -> None:
        if self.accept_dialogs:
            dialog.accept()
            return
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _on_page_error(self, error: Error) -> None:
        self.page_errors.append(f"{error.name}: {error.message}")

    @property
    def violations(self) -> list[str]:
        return [line for line in self.console if any(bad in line for bad in _BAD_CONSOLE)]

    def assert_clean(self) -> None:
        assert not self.violations, f"CSP violations or refusals: {self.violations}"
        assert not self.page_errors, f"uncaught errors in the page: {self.page_errors}"
        assert not self.dialogs, f"unexpected dialog boxes: {self.dialogs}"


@dataclass
class Chromium:
    browser: Browser
    contexts: list[tuple[BrowserContext, PageWatch]] = field(default_factory=list)

    def new_page(self, **context_options: Any) -> tuple[Page, PageWatch]:
        """A page in a fresh context (its own cookie jar and history), watched;
        ``context_options`` go to Playwright's ``new_context``."""
        context = self.browser.new_context(**context_options)
        context.add_init_script(_REPORT_CSP)
        watch = PageWatch()
        context.on("page", watch.watch)  # every page of the context, this one included
        self.contexts.append((context, watch))
        return context.new_page(), watch

    def assert_clean(self) -> None:
        for _, watch in self.contexts:
            watch.assert_clean()


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps (Debian's chromium)")


@contextmanager
def chromium(*extra_flags: str) -> Iterator[Chromium]:
    """Launch headless Chromium; on leaving, every page must have been clean (no CSP
    violation, no uncaught error).

    Playwright gives each launch a new, empty temporary user-data directory (passed as
    ``--user-data-dir``, removed at close), and each :meth:`Chromium.new_page` a context
    of its own: nothing carries over from an earlier test or page.
    """
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_FLAGS, *extra_flags],
            timeout=30_000,
        )
        session = Chromium(browser)
        try:
            yield session
        finally:
            browser.close()
    session.assert_clean()


def navigation_history(page: Page) -> list[str]:
    """Every URL in the tab's back/forward list, as Chromium keeps it (DevTools protocol),
    including what was typed: the parts that page scripts cannot read."""
    cdp = page.context.new_cdp_session(page)
    try:
        entries = cdp.send("Page.getNavigationHistory")["entries"]
    finally:
        cdp.detach()
    return [url for entry in entries for url in (entry["url"], entry.get("userTypedURL", ""))]


def spki_sha256(port: int, host: str = "127.0.0.1") -> str:
    """Base64 SHA-256 of the public key the server presents, for Chromium's
    ``--ignore-certificate-errors-spki-list``: only that exact key is trusted."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only reads the certificate; nothing is sent
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
