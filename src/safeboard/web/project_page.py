"""A project's page: its runs as a table that sorts, filters, pages and picks columns.

Everything is plain links and GET forms (the URL holds the view, so it can be shared and
bookmarked); a small module adds live "new runs" notices and row selection for compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from safeboard.auth.permissions import Role
from safeboard.projects.repository import Project
from safeboard.runs.repository import Listed
from safeboard.runs.table import ColumnKeys, RunQuery, RunTable
from safeboard.vocabulary import is_system_metric
from safeboard.web import format as fmt
from safeboard.web.first_run import first_steps
from safeboard.web.html import Child, Markup, el, escape, join
from safeboard.web.layout import Viewer, page
from safeboard.web.task_pages import project_tabs
from safeboard.web.trash_page import SCRIPT as TRASH_SCRIPT
from safeboard.web.trash_page import bulk_delete_controls

__all__ = ["ProjectView", "render_project"]

BASE_COLUMNS = (
    ("name", "Name"),
    ("status", "Status"),
    ("created", "Started"),
    ("ended", "Duration"),
)
DEFAULT_METRICS, DEFAULT_PARAMS = 4, 3
TOO_LONG = "(too long to show)"  # a param cell whose value is over 1,000 characters as JSON
QUICK_FILTERS = (
    ("running", "status = running"),
    ("finished", "status = finished"),
    ("failed or killed", "status in (failed, killed)"),
)


@dataclass(frozen=True)
class ProjectView:
    project: Project
    query: RunQuery
    columns: list[str]  # chosen columns: params.x, tags.x, metrics.x
    chose_columns: bool  # False: the defaults were used
    page: RunTable | None  # None when the filter was refused
    problem: str | None
    keys: ColumnKeys  # what the column picker offers
    now: datetime
    server_url: str
    reachable: bool  # by other machines: web/first_run.py
    can_delete: bool = False  # editors and owners: "Delete selected" (web/trash_page.py)


def default_columns(param_keys: list[str], metric_keys: list[str]) -> list[str]:
    metric_keys = [k for k in metric_keys if not is_system_metric(k)]  # chosen, never default
    return [f"metrics.{k}" for k in metric_keys[:DEFAULT_METRICS]] + [
        f"params.{k}" for k in param_keys[:DEFAULT_PARAMS]
    ]


def _link(view: ProjectView, **changes: str | None) -> str:
    """The URL of this view with some of its parameters changed (None drops one)."""
    params: dict[str, str | None] = {
        "filter": view.query.filter_text or None,
        "sort": None if view.query.sort == "created" else view.query.sort,
        "order": None if view.query.descending else "asc",
    }
    params.update(changes)
    pairs = [(k, v) for k, v in params.items() if v]
    if view.chose_columns:
        pairs += [("col", c) for c in view.columns] or [("col", "")]
    query = urlencode(pairs)
    return f"/projects/{view.project.name}" + (f"?{query}" if query else "")


def _hidden(view: ProjectView, *, keep_columns: bool, keep_filter: bool) -> Markup:
    fields: list[tuple[str, str]] = []
    if keep_filter and view.query.filter_text:
        fields.append(("filter", view.query.filter_text))
    if view.query.sort != "created":
        fields.append(("sort", view.query.sort))
    if not view.query.descending:
        fields.append(("order", "asc"))
    if keep_columns and view.chose_columns:
        fields += [("col", c) for c in view.columns] or [("col", "")]
    return join(el("input", type="hidden", name=n, value=v) for n, v in fields)


def _label(column: str) -> Markup:
    """ "metrics.val/loss" reads as a small "metric" over "val/loss"."""
    if column in dict(BASE_COLUMNS):
        return escape(dict(BASE_COLUMNS)[column])
    root, _, key = column.partition(".")
    kind = {"metrics": "metric", "params": "param", "tags": "tag"}.get(root, root)
    return join(el("span", kind, class_="root"), key)


def _header(view: ProjectView, column: str) -> Markup:
    if column == "ended":  # the duration column: not a sort key
        return el("th", "Duration", scope="col")
    sorted_here = view.query.sort == column
    arrow = (" ▼" if view.query.descending else " ▲") if sorted_here else ""
    # A first click sorts descending (newest, biggest first), the next one ascending.
    href = _link(
        view,
        sort=None if column == "created" else column,
        order="asc" if sorted_here and view.query.descending else None,
        cursor=None,
    )
    order = "descending" if view.query.descending else "ascending"
    return el(
        "th",
        el("a", _label(column), arrow, href=href, title=f"Sort by {column}"),
        scope="col",
        aria_sort=order if sorted_here else None,
    )


def _cell(row: Listed, column: str) -> Markup:
    root, _, key = column.partition(".")
    if root == "metrics":
        return el("td", fmt.number(row.metrics.get(key)), class_="num")
    if root == "params":
        value = TOO_LONG if key in row.omitted else row.config.get(key)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return el("td", fmt.value(value), class_="num" if numeric else None)
    if root == "tags":
        return el("td", row.tags.get(key, ""))
    return el("td", "")


def _row(view: ProjectView, row: Listed) -> Markup:
    return el(
        "tr",
        el(
            "td",
            el(
                "input",
                type="checkbox",
                name="run",
                value=row.id,
                form="compare-form",
                aria_label=f"Select {row.name}",
            ),
        ),
        el("th", el("a", row.name, href=f"/runs/{row.id}"), scope="row"),
        el("td", el("span", row.status, class_=f"status status-{row.status}")),
        el("td", el("time", fmt.timestamp(row.created_at), datetime=row.created_at.isoformat())),
        el("td", fmt.duration(row.created_at, row.ended_at, view.now), class_="num"),
        [_cell(row, column) for column in view.columns],
        data_run=row.id,
    )


def _filter_form(view: ProjectView) -> Markup:
    return el(
        "form",
        el(
            "label",
            "Filter",
            el(
                "input",
                type="search",
                name="filter",
                value=view.query.filter_text or "",
                maxlength="2000",
                placeholder="params.lr > 0.01 and status = finished",
                aria_describedby="filter-help",
                size="60",
                id="filter",
            ),
        ),
        _hidden(view, keep_columns=True, keep_filter=False),
        el("button", "Apply", type="submit"),
        el("a", "Clear", href=_link(view, filter=None)) if view.query.filter_text else None,
        # project.js checks a new filter first and, if refused, says why here, under the
        # box, while the table stays as it was.
        el("p", "", id="filter-problem", class_="error", role="alert", hidden=True),
        el(
            "p",
            "Show: ",
            join(
                [el("a", label, href=_link(view, filter=text, cursor=None)), " · "]
                for label, text in QUICK_FILTERS
            ),
            el(
                "a",
                "started in the last 24 hours",
                href=_link(
                    view,
                    cursor=None,
                    filter=(
                        f'created > "{(view.now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")}"'
                    ),
                ),
            ),
            class_="hint",
        ),
        el(
            "p",
            "Fields: name, status, created, ended, params.<key>, tags.<key>, metrics.<key>; "
            "operators = != < <= > >= ~ in, is null; combine with and, or, not.",
            id="filter-help",
            class_="hint",
        ),
        method="get",
        class_="toolbar",
        role="search",
    )


def _picker(view: ProjectView) -> Markup:
    def group(title: str, root: str, keys: list[str]) -> Child:
        if not keys:
            return None
        return el(
            "fieldset",
            el("legend", title),
            [
                el(
                    "label",
                    el(
                        "input",
                        type="checkbox",
                        name="col",
                        value=f"{root}.{key}",
                        checked=f"{root}.{key}" in view.columns,
                    ),
                    key,
                )
                for key in keys
            ],
        )

    return el(
        "details",
        el("summary", "Columns"),
        el(
            "form",
            _hidden(view, keep_columns=False, keep_filter=True),
            group("Metrics (last value)", "metrics", view.keys.metrics),
            group("Params", "params", view.keys.params),
            group("Tags", "tags", view.keys.tags),
            el(
                "label",
                "Another column",
                el(
                    "input",
                    name="col",
                    maxlength="300",
                    placeholder="params.optimizer.name",
                    pattern="(params|tags|metrics)\\..+",
                    aria_describedby="other-help",
                ),
                el(
                    "span",
                    "params.<path>, tags.<key> or metrics.<key>",
                    id="other-help",
                    class_="hint",
                ),
            ),
            el("input", type="hidden", name="col", value=""),  # "none chosen" is a choice
            el("button", "Show these columns", type="submit"),
            method="get",
            class_="picker",
        ),
        class_="columns",
    )


def _table(view: ProjectView, table: RunTable) -> Markup:
    columns = ["name", "status", "created", "ended", *view.columns]
    headers = [el("th", el("span", "Select", class_="visually-hidden"), scope="col")]
    headers += [_header(view, column) for column in columns]
    shown = len(table.rows)
    total = shown if table.total is None else table.total
    pager = el(
        "nav",
        el(
            "span",
            f"{shown} shown of {total} run{'s' if total != 1 else ''}",
            data_testid="run-count",
        ),
        el("a", "First page", href=_link(view, cursor=None)) if view.query.cursor else None,
        el("a", "Next page", href=_link(view, cursor=table.next_cursor), rel="next")
        if table.next_cursor
        else None,
        aria_label="Pages",
        class_="pager",
    )
    return join(
        el(
            "div",
            el(
                "table",
                el("caption", "Runs", class_="visually-hidden"),
                el("thead", el("tr", headers)),
                el("tbody", [_row(view, row) for row in table.rows]),
                id="runs",
                class_="runs",
            ),
            class_="scroll",
        ),
        pager,
        el(
            "form",
            el("button", "Compare selected runs", type="submit", id="compare-selected"),
            el(
                "span",
                "Tick two or more runs, then compare their metrics and params.",
                class_="hint",
            ),
            id="compare-form",
            action="/compare",
            method="get",
            class_="toolbar",
        ),
        bulk_delete_controls() if view.can_delete else None,
    )


def _empty_project(view: ProjectView, viewer: Viewer) -> Markup:
    return el(
        "section",
        el("h2", "No runs yet"),
        el("p", "Log your first run from Python; it appears here while it trains."),
        first_steps(
            view.project.name,
            view.server_url,
            admin=viewer.role is Role.ADMIN,
            reachable=view.reachable,
        ),
        class_="empty",
        data_testid="empty-project",
    )


def render_project(view: ProjectView, viewer: Viewer) -> str:
    project = view.project
    heading = join(
        el("nav", el("a", "Projects", href="/"), " /", aria_label="Breadcrumb", class_="crumbs"),
        el("h1", project.name),
        project_tabs(project.name, "runs"),
        el("p", project.description, class_="lead") if project.description else None,
        el("p", "", id="live", role="status", aria_live="polite", class_="live"),
    )
    if view.page is not None and view.page.total == 0 and not view.query.filter_text:
        return page(
            project.name,
            viewer,
            [heading, _empty_project(view, viewer)],
            active="projects",
            scripts=("project.js",),
            meta={"project": project.name},
        )
    body: list[Child] = [heading, _filter_form(view), _picker(view)]
    if view.problem:
        body.append(el("p", view.problem, class_="error", role="alert", id="filter-error"))
    elif view.page is not None and not view.page.rows:
        body.append(
            el(
                "p",
                "No run matches this filter. ",
                el("a", "Show all runs", href=_link(view, filter=None)),
                class_="empty",
            )
        )
    elif view.page is not None:
        body.append(_table(view, view.page))
    return page(
        project.name,
        viewer,
        body,
        active="projects",
        scripts=("project.js", *((TRASH_SCRIPT,) if view.can_delete else ())),
        meta={"project": project.name},
    )
