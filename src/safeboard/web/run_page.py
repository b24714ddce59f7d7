"""A run's page: what it is (status, params, tags, notes, system), its metric charts
(drawn by run.js from the downsampled history, updated live) and its artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from safeboard.documents import MAX_DEPTH, MAX_DOCUMENT_BYTES
from safeboard.metrics.repository import Summary
from safeboard.projects.repository import Project
from safeboard.runs.repository import Run
from safeboard.web import format as fmt
from safeboard.web.assets import STATIC_DIR
from safeboard.web.chart_groups import Chart, chart_layout, named_groups
from safeboard.web.format import flatten
from safeboard.web.html import Child, Markup, el, join
from safeboard.web.layout import Viewer, page
from safeboard.web.media_panel import SCRIPT as MEDIA_SCRIPT
from safeboard.web.media_panel import media_sections
from safeboard.web.run_again_page import run_again_link
from safeboard.web.system_charts import split, system_section
from safeboard.web.task_pages import task_link
from safeboard.web.tensorboard_button import SCRIPT as TENSORBOARD_SCRIPT
from safeboard.web.tensorboard_button import tensorboard_button
from safeboard.web.trash_page import SCRIPT as TRASH_SCRIPT
from safeboard.web.trash_page import delete_run_controls

__all__ = ["CHART_LIBRARY", "RunView", "chart_controls", "library_missing", "render_run"]

CHART_LIBRARY = STATIC_DIR / "vendor" / "uPlot.esm.js"
CHART_STYLES = "vendor/uPlot.min.css"


@dataclass(frozen=True)
class RunView:
    run: Run
    project: Project
    summaries: list[Summary]
    now: datetime
    charts_available: bool
    can_edit: bool = False  # editors and owners of the project (and admins)
    run_again: bool = False  # a task made the run and the viewer may submit to its project
    tensorboard: bool = False  # the run keeps event files, and TensorBoard is available
    task_id: int | None = None  # the task that made this run, if one did


def library_missing() -> Markup:
    return el(
        "p",
        "Charts are unavailable: this installation lacks its chart library "
        "(safeboard/web/static/vendor/uPlot.esm.js, fetched when safeboard is installed). "
        "Reinstall safeboard with `python3 -m pip install .` on a machine that reaches the "
        "npm registry, then restart the server.",
        class_="error",
        role="alert",
        data_testid="charts-missing",
    )


def _facts(pairs: list[tuple[str, Child]]) -> Markup:
    return el("dl", [el("div", el("dt", k), el("dd", v)) for k, v in pairs], class_="facts")


def _withheld(title: str, testid: str) -> Markup:
    return el(
        "section",
        el("h2", title),
        el(
            "p",
            "Too large to show: stored before safeboard bounded what a run carries, it is "
            f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB as JSON or nested deeper than "
            f"{MAX_DEPTH} levels.",
            class_="hint",
            data_testid=testid,
        ),
        class_="panel",
    )


def _key_values(title: str, values: dict[str, Any], testid: str, empty: str) -> Markup:
    if not values:
        return el("section", el("h2", title), el("p", empty, class_="hint"), class_="panel")
    rows = [
        el("tr", el("th", key, scope="row"), el("td", fmt.value(v))) for key, v in values.items()
    ]
    return el(
        "section",
        el("h2", title),
        el("table", el("tbody", rows), data_testid=testid),
        class_="panel",
    )


def _notes_form(notes: str) -> Markup:
    return el(
        "details",
        el("summary", "Edit notes"),
        el(
            "form",
            el("label", "Notes", el("textarea", notes, name="notes", rows="6", maxlength="20000")),
            el("button", "Save notes", type="submit"),
            id="notes-form",
            class_="stack",
        ),
    )


def _tags(tags: dict[str, str], can_edit: bool) -> Markup:
    rows = [
        el(
            "tr",
            el("th", key, scope="row"),
            el("td", value),
            el(
                "td",
                el(
                    "button",
                    "Remove",
                    type="button",
                    class_="danger",
                    data_tag=key,
                    aria_label=f"Remove tag {key}",
                ),
            )
            if can_edit
            else None,
        )
        for key, value in tags.items()
    ]
    add = el(
        "form",
        el(
            "label",
            "Tag",
            el(
                "input", name="key", required=True, maxlength="100", pattern="[A-Za-z0-9_.:\\/\\-]+"
            ),
        ),
        el("label", "Value", el("input", name="value", maxlength="500")),
        el("button", "Add tag", type="submit"),
        id="tag-form",
        class_="toolbar",
    )
    return el(
        "section",
        el("h2", "Tags"),
        el("table", el("tbody", rows), data_testid="tags")
        if rows
        else el("p", "No tags.", class_="hint"),
        add if can_edit else None,
        el("p", "", id="edit-status", role="status", aria_live="polite") if can_edit else None,
        class_="panel",
    )


MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's: larger steps cannot be typed exactly


def _step_input(input_id: str) -> Markup:
    return el(
        "input",
        type="number",
        id=input_id,
        min="0",
        max=str(MAX_SAFE_INTEGER),
        step="1",
        inputmode="numeric",
    )


def chart_controls() -> Markup:
    return el(
        "div",
        el(
            "label",
            "Smoothing",
            el("input", type="range", id="smoothing", min="0", max="0.99", step="0.01", value="0"),
            el("output", "0", id="smoothing-value", for_="smoothing"),
        ),
        el("label", el("input", type="checkbox", id="log-scale"), "Log scale"),
        el(
            "label",
            "X axis",
            el(
                "select",
                el("option", "Step", value="step", selected=True),
                el("option", "Wall time", value="time"),
                id="x-axis",
            ),
        ),
        el(
            "form",
            el("label", "From step", _step_input("zoom-from")),
            el("label", "to step", _step_input("zoom-to")),
            el("button", "Zoom", type="submit", class_="secondary"),
            id="zoom-form",
            class_="zoom-form",
            aria_label="Zoom to a step range",
        ),
        el("button", "Reset zoom", type="button", id="reset-zoom", class_="secondary"),
        el(
            "span",
            "Drag across a chart or type a step range to zoom; double-click to zoom out.",
            class_="hint",
        ),
        class_="chart-controls",
    )


def _charts(view: RunView) -> Markup:
    training, system = split(view.summaries)  # system metrics: their own section, below
    keys = [s.key for s in training]
    counts = {s.key: s.count for s in training}
    if not view.charts_available:
        return el("section", el("h2", "Metrics"), library_missing(), id="metrics")
    groups = json.dumps(named_groups(view.run.params))
    if not keys:
        return el(
            "section",
            el("h2", "Metrics"),
            el(
                "p",
                "No metrics yet. Log some with ",
                el("code", 'run.log({"loss": 0.42}, step=step)'),
                "; charts appear here as they arrive.",
                class_="empty",
                id="no-metrics",
            ),
            el("div", chart_controls(), hidden=not system, id="controls-box"),
            el("div", class_="charts", id="charts", data_groups=groups),
            id="metrics",
        )
    return el(
        "section",
        el("h2", "Metrics"),
        chart_controls(),
        el(
            "div",
            [_figure(chart, counts) for chart in chart_layout(view.run.params, keys)],
            class_="charts",
            id="charts",
            data_groups=groups,  # for metrics that begin while the page is open (run.js)
        ),
        _summary_table(view.summaries),
        id="metrics",
    )


def _figure(chart: Chart, counts: dict[str, int]) -> Markup:
    """A metric's chart; a group's (chart_groups.py) names its metrics in data-keys."""
    if len(chart.keys) == 1:
        key = chart.keys[0]
        return el("figure", el("h3", key), class_="chart", data_key=key,
                  data_count=counts[key], data_testid="chart")  # fmt: skip
    return el(
        "figure", el("h3", chart.title), class_="chart", data_key=chart.keys[0],
        data_keys=json.dumps(chart.keys), data_counts=json.dumps([counts[k] for k in chart.keys]),
        data_testid="chart",
    )  # fmt: skip


def _summary_table(summaries: list[Summary]) -> Markup:
    head = el(
        "tr",
        [el("th", h, scope="col") for h in ("Metric", "Points", "Last step", "Last", "Min", "Max")],
    )
    rows = [
        el(
            "tr",
            el("th", s.key, scope="row"),
            el("td", str(s.count), class_="num"),
            el("td", str(s.last_step), class_="num"),
            el("td", fmt.number(s.last_value), class_="num"),
            el("td", fmt.number(s.min), class_="num"),
            el("td", fmt.number(s.max), class_="num"),
        )
        for s in summaries
    ]
    return el(
        "details",
        el("summary", "Summary table"),
        el("table", el("thead", head), el("tbody", rows), class_="runs"),
    )


def _artifacts() -> Markup:
    # Filled by run.js from /api/v1/runs/{id}/artifacts once the artifact API is present.
    return el(
        "section",
        el("h2", "Artifacts"),
        el("p", "Loading…", id="artifacts-status", role="status", class_="hint"),
        el("div", id="artifacts", class_="artifacts"),
        id="artifacts-section",
    )


def render_run(view: RunView, viewer: Viewer) -> str:
    run = view.run
    status = el("span", run.status, id="run-status", class_=f"status status-{run.status}")
    facts = _facts(
        [
            ("Status", status),
            ("Started", fmt.timestamp(run.created_at)),
            ("Ended", fmt.timestamp(run.ended_at) or "—"),
            ("Duration", fmt.duration(run.created_at, run.ended_at, view.now)),
            ("Id", el("code", run.id)),
        ]
    )
    notes = el(
        "section",
        el("h2", "Notes"),
        el("div", run.notes, class_="notes", data_testid="notes", id="notes-text")
        if run.notes or view.can_edit
        else el("p", "No notes. Set them with run.set_notes(...).", class_="hint"),
        _notes_form(run.notes) if view.can_edit else None,
        class_="panel",
    )
    tags = _tags(dict(run.tags), view.can_edit)
    content = join(
        el(
            "nav",
            el("a", "Projects", href="/"),
            " / ",
            el("a", view.project.name, href=f"/projects/{view.project.name}"),
            aria_label="Breadcrumb",
            class_="crumbs",
        ),
        el("h1", run.name, data_testid="run-name"),
        facts,
        run_again_link(run.id) if view.run_again else None,
        tensorboard_button([run.id]) if view.tensorboard else None,
        task_link(view.task_id),
        el("div", el("p", "", id="live", role="status", aria_live="polite", class_="live")),
        _charts(view),
        system_section(split(view.summaries)[1]) if view.charts_available else None,
        media_sections(),  # histograms, image series, texts (media.js)
        el(
            "div",
            _withheld("Params", "params-withheld")
            if "config" in run.withheld
            else _key_values("Params", flatten(run.params), "params", "No params."),
            tags,
            notes,
            _withheld("System", "system-withheld")
            if "system" in run.withheld
            else _key_values("System", flatten(run.system), "system", "No system information."),
            class_="panels",
        ),
        _artifacts(),
        delete_run_controls() if view.can_edit else None,
    )
    scripts = ("run.js", MEDIA_SCRIPT, *((TENSORBOARD_SCRIPT,) if view.tensorboard else ()))
    scripts = (*scripts, *((TRASH_SCRIPT,) if view.can_edit else ()))
    return page(
        run.name,
        viewer,
        content,
        active="projects",
        scripts=scripts,
        styles=(CHART_STYLES,) if view.charts_available else (),
        meta={"run-id": run.id, "run-status": run.status},
    )
