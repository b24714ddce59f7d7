"""The deleted projects page (``/trash``): the projects in the trash that you may bring
back (yours; an admin: all), each with "Restore" and "Delete for good", asked on the page
first. Buttons only: static/deleted_projects.js calls the API with the session's CSRF
token (``POST /api/v1/projects/{name}/restore`` and ``.../purge``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from safeboard.projects.lifecycle import TrashedProject
from safeboard.web import format as fmt
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = ["DeletedProject", "purge_after", "render_deleted_projects"]

SCRIPT = "deleted_projects.js"


@dataclass(frozen=True)
class DeletedProject:
    project: TrashedProject
    purge_after: datetime  # when the retention sweep purges it


def _row(found: DeletedProject) -> Markup:
    name = found.project.name
    actions = join(
        el("button", "Restore", type="button", class_="restore", data_project=name),
        " ",
        el("button", "Delete for good", type="button", class_="purge danger", data_project=name),
    )
    return el(
        "tr",
        el("td", name),
        el("td", fmt.timestamp(found.project.deleted_at)),
        el("td", found.project.deleted_by),
        el("td", fmt.timestamp(found.purge_after)),
        el("td", actions),
        data_project=name,
    )


def _table(listed: list[DeletedProject]) -> Markup:
    if not listed:
        return el("p", "No deleted projects.", class_="hint", id="deleted-empty")
    heads = ("Project", "Deleted", "By", "Purged after", "")
    head = el("tr", *(el("th", h, scope="col") for h in heads))
    rows = [_row(found) for found in listed]
    return el("table", el("thead", head), el("tbody", rows), id="deleted-projects")


def _confirm() -> Markup:
    """One question for every row: the script fills it in for the button clicked."""
    return el(
        "div",
        el("p", "", id="deleted-question"),
        el("button", "Yes", type="button", id="deleted-yes", class_="danger"),
        el("button", "Keep it", type="button", id="deleted-cancel"),
        id="deleted-confirm",
        class_="confirm",
        hidden=True,
        role="group",
    )


def render_deleted_projects(listed: list[DeletedProject], viewer: Viewer) -> str:
    content = join(
        el(
            "nav",
            el("a", "Projects", href="/"),
            " / Deleted projects",
            aria_label="Breadcrumb",
            class_="crumbs",
        ),
        el("h1", "Deleted projects"),
        el(
            "p",
            "Projects in the trash that you own (an admin: every one), with their runs. "
            "Restore brings a project back with the runs that went with it; each is purged "
            "for good when its retention period ends.",
            class_="hint",
        ),
        el("p", "", id="deleted-status", role="status", aria_live="polite"),
        _confirm() if listed else None,
        _table(listed),
    )
    return page("Deleted projects", viewer, content, active="projects", scripts=(SCRIPT,))


def purge_after(project: TrashedProject, server_days: int) -> datetime:
    days = server_days if project.trash_days is None else project.trash_days
    return project.deleted_at + timedelta(days=days)
