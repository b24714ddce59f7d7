"""A project's trash and settings page (``/projects/{name}/trash``), and the delete
controls other pages show: the run page's "Delete run", the runs table's "Delete
selected". Buttons only: static/trash.js calls the API with the session's CSRF token, and
asks for a confirmation on the page before anything is deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from safeboard.projects.repository import Project
from safeboard.projects.retention import Retention
from safeboard.runs.trash import Trashed
from safeboard.web import format as fmt
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page
from safeboard.web.task_pages import project_tabs

__all__ = ["TrashView", "bulk_delete_controls", "delete_run_controls", "render_trash"]

SCRIPT = "trash.js"


def _confirm(prefix: str, question: str, *buttons: Markup) -> Markup:
    return el(
        "div",
        el("p", question),
        *buttons,
        el("button", "Keep it", type="button", id=f"{prefix}-cancel"),
        id=f"{prefix}-confirm",
        class_="confirm",
        hidden=True,
        role="group",
    )


def delete_run_controls() -> Markup:
    """The run page's delete button (editors, owners), with its confirmation."""
    return el(
        "section",
        el("button", "Delete run", type="button", id="delete-run", class_="danger"),
        _confirm(
            "delete-run",
            "Move this run to the project's trash, or delete it for good? A task still "
            "running it is cancelled first.",
            el("button", "Move to trash", type="button", id="delete-run-trash"),
            el("button", "Delete for good", type="button", id="delete-run-purge", class_="danger"),
        ),
        el("p", "", id="delete-run-status", role="status", aria_live="polite"),
        class_="danger-zone",
    )


def bulk_delete_controls() -> Markup:
    """The runs table's "Delete selected" (editors, owners): the rows ticked for compare."""
    return el(
        "div",
        el("button", "Delete selected", type="button", id="delete-selected", class_="danger"),
        _confirm(
            "delete-selected",
            "",
            el("button", "Move to trash", type="button", id="delete-selected-trash"),
        ),
        el("p", "", id="delete-selected-status", role="status", aria_live="polite"),
        class_="bulk-delete",
    )


@dataclass(frozen=True)
class TrashView:
    project: Project
    runs: list[Trashed]
    retention: Retention
    trash_days: int  # the period in force (the project's, or the server's)
    can_edit: bool  # restore and purge: editors and owners
    can_manage: bool  # rename, delete, retention: owners and admins


def _row(view: TrashView, run: Trashed) -> Markup:
    actions = None
    if view.can_edit:
        actions = join(
            el("button", "Restore", type="button", class_="restore", data_run=run.id),
            " ",
            el("button", "Delete for good", type="button", class_="purge danger", data_run=run.id),
        )
    return el(
        "tr",
        el("td", el("code", run.id[:8])),
        el("td", run.name),
        el("td", run.status),
        el("td", fmt.timestamp(run.deleted_at)),
        el("td", run.deleted_by),
        el("td", fmt.timestamp(run.deleted_at + timedelta(days=view.trash_days))),
        el("td", actions),
        data_run=run.id,
    )


def _trash_table(view: TrashView) -> Markup:
    if not view.runs:
        return el("p", "The trash is empty.", class_="hint", id="trash-empty")
    head = el(
        "tr",
        *(
            el("th", h, scope="col")
            for h in ("Id", "Name", "Status", "Deleted", "By", "Purged after", "")
        ),
    )
    rows = [_row(view, run) for run in view.runs]
    return el("table", el("thead", head), el("tbody", rows), id="trash-table")


def _settings(view: TrashView) -> Markup:
    kept = view.retention
    return el(
        "section",
        el("h2", "Project settings"),
        el(
            "form",
            el(
                "label",
                "Name ",
                el(
                    "input",
                    name="name",
                    value=view.project.name,
                    required=True,
                    maxlength="100",
                    id="rename-input",
                ),
            ),
            el("button", "Rename", type="submit"),
            id="rename-form",
        ),
        el(
            "form",
            el(
                "label",
                "Purge the trash after (days, empty: the server's default) ",
                el(
                    "input",
                    name="trash_days",
                    type="number",
                    min="0",
                    max="36500",
                    value="" if kept.trash_days is None else str(kept.trash_days),
                    id="trash-days",
                ),
            ),
            el(
                "label",
                " Move runs older than (days, empty: never) ",
                el(
                    "input",
                    name="max_run_age_days",
                    type="number",
                    min="0",
                    max="36500",
                    value="" if kept.max_run_age_days is None else str(kept.max_run_age_days),
                    id="max-age-days",
                ),
            ),
            el("button", "Save retention", type="submit"),
            id="retention-form",
        ),
        el("button", "Delete project", type="button", id="delete-project", class_="danger"),
        _confirm(
            "delete-project",
            "Move this project and all its runs to the trash?",
            el("button", "Delete project", type="button", id="delete-project-yes", class_="danger"),
        ),
        el("p", "", id="settings-status", role="status", aria_live="polite"),
        class_="panel",
    )


def render_trash(view: TrashView, viewer: Viewer) -> str:
    name = view.project.name
    content = join(
        el(
            "nav",
            el("a", "Projects", href="/"),
            " / ",
            el("a", name, href=f"/projects/{name}"),
            aria_label="Breadcrumb",
            class_="crumbs",
        ),
        el("h1", name),
        project_tabs(name, "trash"),
        el(
            "p",
            f"Deleted runs stay here {view.trash_days} days, then they are purged.",
            class_="hint",
        ),
        el("p", "", id="trash-status", role="status", aria_live="polite"),
        _confirm(
            "trash-purge",
            "",
            el("button", "Delete for good", type="button", id="trash-purge-yes", class_="danger"),
        )
        if view.can_edit and view.runs
        else None,
        _trash_table(view),
        _settings(view) if view.can_manage else None,
    )
    return page(
        f"{name}: trash",
        viewer,
        content,
        active="projects",
        scripts=(SCRIPT,),
        meta={"project": name},
    )
