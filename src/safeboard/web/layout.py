"""The frame around every signed-in page: head, navigation bar, main, scripts."""

from __future__ import annotations

from dataclasses import dataclass

from safeboard.auth.permissions import Role
from safeboard.web.assets import asset
from safeboard.web.html import Child, Markup, el, join

__all__ = ["Viewer", "document", "page"]


@dataclass(frozen=True)
class Viewer:
    """The signed-in person a page is made for, and the CSRF token its scripts send."""

    username: str
    role: Role
    csrf_token: str | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


NAV = (
    ("projects", "/", "Projects"),
    ("compare", "/compare", "Compare"),
    ("account", "/account", "Account"),
)
ADMIN_NAV = (
    ("users", "/admin/users", "Users"),
    ("grants", "/admin/grants", "Grants"),
    ("audit", "/admin/audit", "Audit log"),
    ("sessions", "/admin/sessions", "Sessions"),
    ("agents", "/admin/agents", "Agents"),
)


def document(
    title: str,
    body: Child,
    *,
    scripts: tuple[str, ...] = (),
    styles: tuple[str, ...] = (),
    meta: dict[str, str] | None = None,
    body_class: str | None = None,
) -> str:
    """A whole HTML document. Scripts (ES modules: the CSP allows no other kind) and
    styles are named by their path in the static directory, e.g. "app.js"; ``meta``
    passes values to the scripts as <meta name=... content=...>."""
    head = join(
        el("meta", charset="utf-8"),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("title", f"{title} · safeboard"),
        el("link", rel="icon", href="data:,"),
        [el("link", rel="stylesheet", href=asset(name)) for name in styles],
        el("link", rel="stylesheet", href=asset("style.css")),
        [el("meta", name=name, content=value) for name, value in (meta or {}).items()],
        [el("script", type="module", src=asset(name)) for name in scripts],
    )
    return "<!doctype html>\n" + el(
        "html", el("head", head), el("body", body, class_=body_class), lang="en"
    )


def _nav(viewer: Viewer | None, active: str) -> Markup:
    """Admin links show for admins; on a shell page (viewer unknown) its script reveals
    them once it knows who is signed in."""
    items = [(key, href, label, False) for key, href, label in NAV]
    if viewer is None or viewer.is_admin:
        items += [(key, href, label, viewer is None) for key, href, label in ADMIN_NAV]
    return el(
        "nav",
        el(
            "ul",
            [
                el(
                    "li",
                    el("a", label, href=href, aria_current="page" if key == active else None),
                    class_="admin-only" if hidden else None,
                    hidden=hidden,
                )
                for key, href, label, hidden in items
            ],
        ),
        aria_label="Main",
    )


def page(
    title: str,
    viewer: Viewer | None,
    content: Child,
    *,
    active: str = "",
    scripts: tuple[str, ...] = (),
    styles: tuple[str, ...] = (),
    meta: dict[str, str] | None = None,
) -> str:
    """A signed-in page: the bar (name, navigation, sign out), then ``content``. With no
    viewer it is a shell whose script asks the API who is signed in (the home page)."""
    who = f"Signed in as {viewer.username} ({viewer.role.value})" if viewer else ""
    bar = el(
        "header",
        el("a", "safeboard", href="/", class_="brand"),
        _nav(viewer, active),
        el("span", who, id="who", data_testid="who"),
        el("button", "Sign out", id="logout", type="button"),
        class_="bar",
    )
    skip = el("a", "Skip to content", href="#content", class_="skip")
    values = {**({"csrf-token": viewer.csrf_token or ""} if viewer else {}), **(meta or {})}
    return document(
        title,
        [skip, bar, el("main", content, id="content", tabindex="-1")],
        scripts=("app.js", *scripts),
        styles=styles,
        meta=values,
    )
