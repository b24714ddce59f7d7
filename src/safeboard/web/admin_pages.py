"""Administration pages: users and invitations, project grants, the audit log, sessions.
Rendered from the services; changes go through the API (admin.js), CSRF-checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from safeboard.accounts.repository import SessionInfo, User
from safeboard.audit.events import AuditAction, AuditEntry
from safeboard.auth.permissions import ProjectRole, Role
from safeboard.projects.repository import Project
from safeboard.web import format as fmt
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = ["AuditFilter", "render_audit", "render_grants", "render_sessions", "render_users"]

SCRIPTS = ("admin.js",)


def _status() -> Markup:
    return el("p", "", id="status", role="status", aria_live="polite")


def _head(*names: str) -> Markup:
    return el("thead", el("tr", [el("th", n, scope="col") for n in names]))


def _role_select(user: User) -> Markup:
    return el(
        "select",
        [el("option", r.value, value=r.value, selected=r is user.role) for r in Role],
        data_action="role",
        data_user=user.username,
        aria_label=f"Role of {user.username}",
    )


def _delete_user_button(user: User, viewer: Viewer) -> Markup:
    """Delete the account (issue 18): asked in a confirm box; never oneself from here."""
    return el("button", "Delete", type="button", class_="danger", data_action="delete-user",
              data_user=user.username, disabled=user.username == viewer.username)  # fmt: skip


def render_users(viewer: Viewer, users: list[User]) -> str:
    rows = []
    for user in users:
        toggle = "Disable" if user.is_active else "Enable"
        rows.append(
            el(
                "tr",
                el("th", user.username, scope="row"),
                el("td", user.display_name),
                el("td", _role_select(user)),
                el("td", "active" if user.is_active else "disabled"),
                el("td", "set" if user.has_password else "not yet"),
                el("td", fmt.timestamp(user.created_at)),
                el(
                    "td",
                    el(
                        "button",
                        "Invitation link",
                        type="button",
                        class_="secondary",
                        data_action="invite",
                        data_user=user.username,
                        disabled=user.username == viewer.username,
                    ),
                    " ",
                    el(
                        "button",
                        toggle,
                        type="button",
                        class_="danger" if user.is_active else "secondary",
                        data_action="active",
                        data_user=user.username,
                        data_value="false" if user.is_active else "true",
                    ),
                    " ",
                    _delete_user_button(user, viewer),
                ),
                data_user=user.username,
            )
        )
    add = el(
        "form",
        el("h2", "Add a user"),
        el("label", "User name", el("input", name="username", required=True, maxlength="64")),
        el("label", "Display name", el("input", name="display_name", maxlength="200")),
        el(
            "label",
            "Role",
            el(
                "select",
                [el("option", r.value, value=r.value) for r in reversed(Role)],
                name="role",
            ),
        ),
        el("button", "Add and make an invitation link", type="submit"),
        id="add-user",
        class_="stack",
    )
    invite = el(
        "section",
        el("h2", "Invitation link"),
        el(
            "p",
            "Send this link to ",
            el("strong", "", id="invite-user"),
            " over a channel you trust. It works once and expires in ",
            el("span", "", id="invite-hours"),
            " hours; an earlier link for the same user stops working.",
        ),
        el("p", el("code", "", id="invite-link", data_testid="invite-link")),
        id="invite",
        class_="secret",
        hidden=True,
        tabindex="-1",
    )
    content = join(
        el("h1", "Users"),
        _status(),
        invite,
        el(
            "div",
            el(
                "table",
                _head("User", "Name", "Role", "State", "Password", "Created", ""),
                el("tbody", rows),
                class_="runs",
                id="users",
            ),
            class_="scroll",
        ),
        add,
    )
    return page("Users", viewer, content, active="users", scripts=SCRIPTS)


def render_grants(
    viewer: Viewer, projects: list[tuple[Project, dict[str, ProjectRole]]], users: list[User]
) -> str:
    sections = []
    names = [u.username for u in users]
    for project, grants in projects:
        rows = [
            el(
                "tr",
                el("th", username, scope="row"),
                el("td", role.value),
                el(
                    "td",
                    el(
                        "button",
                        "Remove",
                        type="button",
                        class_="danger",
                        data_action="ungrant",
                        data_project=project.name,
                        data_user=username,
                    ),
                ),
            )
            for username, role in sorted(grants.items())
        ]
        form = el(
            "form",
            el(
                "label",
                "User",
                el("select", [el("option", n, value=n) for n in names], name="user"),
            ),
            el(
                "label",
                "Role",
                el(
                    "select",
                    [  # the least power by default: a grant is a choice to give more
                        el("option", r.value, value=r.value, selected=r is ProjectRole.VIEWER)
                        for r in ProjectRole
                    ],
                    name="role",
                ),
            ),
            el("button", "Grant", type="submit"),
            class_="toolbar grant-form",
            data_project=project.name,
        )
        sections.append(
            el(
                "section",
                el("h2", el("a", project.name, href=f"/projects/{project.name}")),
                el("table", _head("User", "Role", ""), el("tbody", rows), class_="runs")
                if rows
                else el("p", "Nobody holds a grant; only admins see this project.", class_="hint"),
                form,
                data_project=project.name,
            )
        )
    content = join(
        el("h1", "Project grants"),
        el(
            "p",
            "Owners manage a project, editors log runs to it, viewers read it. Admins "
            "reach every project.",
            class_="hint",
        ),
        _status(),
        sections or el("p", "No projects yet.", class_="empty"),
    )
    return page("Grants", viewer, content, active="grants", scripts=SCRIPTS)


@dataclass(frozen=True)
class AuditFilter:
    action: str | None
    since: str | None
    actor: str | None
    before_id: int | None


def render_audit(
    viewer: Viewer, entries: list[AuditEntry], chosen: AuditFilter, older: int | None
) -> str:
    form = el(
        "form",
        el(
            "label",
            "Action",
            el(
                "select",
                el("option", "any", value=""),
                [
                    el("option", a.value, value=a.value, selected=a.value == chosen.action)
                    for a in AuditAction
                ],
                name="action",
            ),
        ),
        el(
            "label",
            "Since (UTC)",
            el("input", type="datetime-local", name="since", value=chosen.since or ""),
        ),
        el(
            "label",
            "Actor contains",
            el("input", name="actor", value=chosen.actor or "", maxlength="200"),
        ),
        el("button", "Filter", type="submit"),
        el("a", "Clear", href="/admin/audit"),
        method="get",
        class_="toolbar",
    )
    rows = [
        el(
            "tr",
            el("td", str(e.id), class_="num"),
            el("td", fmt.timestamp(e.at)),
            el("td", e.action),
            el("td", e.actor),
            el("td", e.target),
            el("td", e.outcome),
            el("td", e.address),
            el(
                "td",
                el("code", json.dumps(dict(e.detail), sort_keys=True)) if e.detail else "",
                class_="wrap",
            ),
        )
        for e in entries
    ]
    older_link = None
    if older is not None:
        query = {
            k: v
            for k, v in (
                ("action", chosen.action),
                ("since", chosen.since),
                ("actor", chosen.actor),
            )
            if v
        }
        older_link = el(
            "a",
            "Older entries",
            rel="next",
            href="/admin/audit?" + urlencode({**query, "before": str(older)}),
        )
    content = join(
        el("h1", "Audit log"),
        el(
            "p",
            "Append-only and hash-chained; check it with ",
            el("code", "safeboard audit verify"),
            ". Newest first.",
            class_="hint",
        ),
        form,
        el(
            "div",
            el(
                "table",
                _head("#", "At", "Action", "Actor", "Target", "Outcome", "Address", "Detail"),
                el("tbody", rows),
                class_="runs",
                id="audit",
            ),
            class_="scroll",
        )
        if rows
        else el("p", "No entry matches.", class_="empty"),
        el("nav", older_link, class_="pager", aria_label="Pages"),
    )
    return page("Audit log", viewer, content, active="audit")


def render_sessions(viewer: Viewer, sessions: list[tuple[User, list[SessionInfo]]]) -> str:
    rows = []
    for user, found in sessions:
        for i, session in enumerate(found):
            end = None
            if i == 0:
                end = el(
                    "button",
                    f"End all of {user.username}'s sessions",
                    type="button",
                    class_="danger",
                    data_action="end-sessions",
                    data_user=user.username,
                )
            rows.append(
                el(
                    "tr",
                    el("th", user.username, scope="row"),
                    el("td", fmt.timestamp(session.created_at)),
                    el("td", fmt.timestamp(session.last_seen_at)),
                    el("td", fmt.timestamp(session.expires_at)),
                    el("td", session.address),
                    el("td", session.user_agent),
                    el("td", end),
                )
            )
    content = join(
        el("h1", "Sessions"),
        el(
            "p",
            "Browser sessions of every user. Ending them signs the user out everywhere; "
            "their API keys keep working (revoke those from the user's account).",
            class_="hint",
        ),
        _status(),
        el(
            "div",
            el(
                "table",
                _head("User", "Signed in", "Last seen", "Expires", "Address", "Browser", ""),
                el("tbody", rows),
                class_="runs",
                id="all-sessions",
            ),
            class_="scroll",
        ),
    )
    return page("Sessions", viewer, content, active="sessions", scripts=SCRIPTS)
