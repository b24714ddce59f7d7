"""Your account: password, where you are signed in, and your API keys (account.js does
the changes through the API, with the session's CSRF token)."""

from __future__ import annotations

from safeboard.projects.repository import Project
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = ["render_account"]


def _password_form(username: str) -> Markup:
    return el(
        "form",
        el("h2", "Change your password"),
        el(
            "input",
            type="text",
            name="username",
            autocomplete="username",
            hidden=True,
            value=username,
        ),
        el(
            "label",
            "Current password",
            el(
                "input",
                type="password",
                name="current",
                autocomplete="current-password",
                required=True,
            ),
        ),
        el(
            "label",
            "New password",
            el(
                "input",
                type="password",
                name="new",
                autocomplete="new-password",
                minlength="12",
                required=True,
                aria_describedby="password-help",
            ),
        ),
        el(
            "label",
            "Repeat the new password",
            el(
                "input",
                type="password",
                name="again",
                autocomplete="new-password",
                minlength="12",
                required=True,
            ),
        ),
        el(
            "p",
            "At least 12 characters; common passwords are refused. Your other sessions "
            "end when it changes.",
            id="password-help",
            class_="hint",
        ),
        el("button", "Change password", type="submit"),
        el("p", "", id="password-status", role="status", aria_live="polite"),
        id="password-form",
        class_="stack",
    )


def _key_form(projects: list[Project]) -> Markup:
    return el(
        "form",
        el("h2", "Create an API key"),
        el(
            "label",
            "Name",
            el("input", name="name", required=True, maxlength="100", placeholder="laptop training"),
        ),
        el(
            "label",
            "Scope",
            el(
                "select",
                el("option", "write: log runs and metrics", value="write", selected=True),
                el("option", "read: view only", value="read"),
                el("option", "admin: everything you may do", value="admin"),
                name="scope",
            ),
        ),
        el(
            "label",
            "Project",
            el(
                "select",
                el("option", "every project you can reach", value=""),
                [el("option", p.name, value=str(p.id)) for p in projects],
                name="project",
            ),
        ),
        el(
            "label",
            "Expires after (days)",
            el("input", type="number", name="days", min="1", max="3650", value="90"),
        ),
        el("label", el("input", type="checkbox", name="never"), "Never expires"),
        el("button", "Create key", type="submit"),
        el("p", "", id="key-status", role="status", aria_live="polite"),
        id="key-form",
        class_="stack",
    )


def _secret_box(server_url: str) -> Markup:
    return el(
        "section",
        el("h2", "Your new key"),
        el("p", "Copy it now: it is shown this once and never again."),
        el("p", el("code", "", id="new-key", data_testid="new-key")),
        el("button", "Copy", type="button", id="copy-key", class_="secondary"),
        el("p", "Use it from a training script on another machine:"),
        el(
            "pre",
            el(
                "code",
                f"export SAFEBOARD_URL={server_url}\n",
                "export SAFEBOARD_API_KEY=",
                el("span", "", id="new-key-env"),
            ),
        ),
        id="secret",
        class_="secret",
        hidden=True,
        tabindex="-1",
    )


def _filled_by_script(title: str, table_id: str, headings: tuple[str, ...]) -> Markup:
    """A section whose table rows ``account.js`` fills (and refills after a change)."""
    head = el("thead", el("tr", [el("th", h, scope="col") for h in headings]))
    return el(
        "section",
        el("h2", title),
        el("p", "", id=f"{table_id}-status", role="status", class_="hint"),
        el(
            "div",
            el("table", head, el("tbody"), id=table_id, class_="runs"),
            class_="scroll",
        ),
    )


def render_account(viewer: Viewer, projects: list[Project], server_url: str) -> str:
    keys = _filled_by_script(
        "Your API keys",
        "keys",
        ("Name", "Id", "Scope", "Project", "Created", "Expires", "Last used", ""),
    )
    sessions = _filled_by_script(
        "Where you are signed in",
        "sessions",
        ("Signed in", "Last seen", "Expires", "Address", "Browser", ""),
    )
    content = join(
        el("h1", f"Account: {viewer.username}"),
        _secret_box(server_url),
        el("div", _key_form(projects), _password_form(viewer.username), class_="panels"),
        keys,
        sessions,
    )
    return page("Account", viewer, content, active="account", scripts=("account.js",))
