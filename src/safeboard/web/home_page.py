"""The home page: your projects (listed by its script from the API), a form to add one,
and what to do when there are none yet."""

from __future__ import annotations

from safeboard.web.first_run import first_steps
from safeboard.web.html import el
from safeboard.web.layout import page

__all__ = ["render_home"]


COLUMNS = ("Project", "Description", "Runs", "Last run", "Your role", "Created")


def render_home(server_url: str, *, reachable: bool) -> str:
    content = [
        el("h1", "Projects"),
        el("p", "Loading…", id="status", role="status", aria_live="polite"),
        el(
            "table",
            el("caption", "Your projects", class_="visually-hidden"),
            el(
                "thead",
                el(
                    "tr",
                    [el("th", h, scope="col") for h in COLUMNS],
                ),
            ),
            el("tbody"),
            id="projects",
            class_="runs",
            hidden=True,
        ),
        el("p", el("a", "Deleted projects", href="/trash", id="deleted-link"), class_="hint"),
        el(
            "section",
            el("h2", "No projects yet"),
            el("p", "A project is created the first time a run logs to it."),
            first_steps("my-first-project", server_url, admin=None, reachable=reachable),
            el("p", "Or create an empty project below and grant your team access to it."),
            id="no-projects",
            class_="empty",
            hidden=True,
        ),
        el(
            "form",
            el("h2", "New project"),
            el(
                "label",
                "Name",
                el(
                    "input",
                    name="name",
                    required=True,
                    maxlength="100",
                    pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*",
                    aria_describedby="name-help",
                ),
            ),
            el("p", "Letters, digits, dot, dash and underscore.", id="name-help", class_="hint"),
            el("label", "Description", el("input", name="description", maxlength="2000")),
            el("button", "Create project", type="submit"),
            el("p", "", id="new-project-status", role="status", aria_live="polite"),
            id="new-project",
            class_="stack",
        ),
    ]
    return page("Projects", None, content, active="projects", scripts=("home.js",))
