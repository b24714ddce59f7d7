"""Compare runs: chosen metrics of the selected runs overlaid (compare.js), and tables of
the params, tags and final metric values that differ between them. A chart group that any
of the runs names (``add_scalars``: web/chart_groups.py) is one chart here too, a line per
run and metric."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from safeboard.metrics.repository import Summary
from safeboard.projects.repository import Project
from safeboard.runs.repository import Run
from safeboard.vocabulary import is_system_metric
from safeboard.web import format as fmt
from safeboard.web.chart_groups import Chart, chart_layout, merged_groups
from safeboard.web.format import flatten
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page
from safeboard.web.media_panel import COMPARE_SCRIPT, image_compare_section
from safeboard.web.run_page import CHART_STYLES, chart_controls, library_missing
from safeboard.web.tensorboard_button import SCRIPT as TENSORBOARD_SCRIPT
from safeboard.web.tensorboard_button import tensorboard_button

__all__ = ["MAX_COMPARED", "Compared", "render_compare"]

MAX_COMPARED = 20
DEFAULT_CHARTS = 4


@dataclass(frozen=True)
class Compared:
    run: Run
    project: Project
    summaries: list[Summary]


def _differing(documents: list[dict[str, Any]], show_all: bool) -> list[str]:
    """Keys in the order first seen; unless ``show_all``, only those whose values differ
    (a key missing from some runs differs)."""
    keys = list(dict.fromkeys(k for document in documents for k in document))
    if show_all:
        return keys

    def seen(document: dict[str, Any], key: str) -> str:
        if key not in document:
            return "missing"
        return "=" + json.dumps(document[key], sort_keys=True, default=str)

    return [k for k in keys if len({seen(d, k) for d in documents}) > 1]


def _table(
    title: str, runs: list[Compared], rows: list[tuple[str, list[str]]], testid: str, empty: str
) -> Markup:
    if not rows:
        return el("section", el("h2", title), el("p", empty, class_="hint"))
    head = el(
        "tr",
        el("th", "Key", scope="col"),
        [el("th", el("a", c.run.name, href=f"/runs/{c.run.id}"), scope="col") for c in runs],
    )
    body = [
        el("tr", el("th", key, scope="row"), [el("td", value) for value in values])
        for key, values in rows
    ]
    return el(
        "section",
        el("h2", title),
        el(
            "div",
            el("table", el("thead", head), el("tbody", body), class_="runs", data_testid=testid),
            class_="scroll",
        ),
    )


def _empty(viewer: Viewer) -> str:
    content = join(
        el("h1", "Compare runs"),
        el(
            "p",
            "Pick two or more runs: tick them in a project's runs table and press "
            "“Compare selected runs”.",
            class_="empty",
            data_testid="compare-empty",
        ),
        el("p", el("a", "Go to your projects", href="/")),
    )
    return page("Compare", viewer, content, active="compare")


def _tensorboard(compared: list[Compared], with_files: Sequence[str]) -> Markup | None:
    """The button over the compared runs that keep event files (None when none do)."""
    ids = [c.run.id for c in compared if c.run.id in set(with_files)]
    if not ids:
        return None
    label = (
        "TensorBoard" if len(ids) == len(compared) else f"TensorBoard ({len(ids)} of these runs)"
    )
    return tensorboard_button(ids, label=label)


def _choice(chart: Chart, chosen: list[Chart]) -> Markup:
    """A metric's box, or a group's: its metrics in data-keys (compare.js)."""
    ticked = chart in chosen
    if len(chart.keys) == 1:
        box = el("input", type="checkbox", name="metric", value=chart.title, checked=ticked)
        return el("label", box, chart.title)
    box = el("input", type="checkbox", name="metric", value=chart.title, checked=ticked,
             data_keys=json.dumps(chart.keys))  # fmt: skip
    return el("label", box, chart.title, el("span", f" ({', '.join(chart.keys)})", class_="hint"))


def _system_picker(keys: list[str]) -> Markup | None:
    """The system metrics, apart from the training metrics and unticked."""
    if not keys:
        return None
    boxes = [
        el("label", el("input", type="checkbox", name="metric", value=key), key) for key in keys
    ]
    return el("fieldset", el("legend", "System metrics"), boxes, id="system-picker")


def render_compare(
    compared: list[Compared],
    viewer: Viewer,
    *,
    show_all: bool,
    charts_available: bool,
    tensorboard_runs: Sequence[str] = (),  # those that keep event files (the button's)
) -> str:
    if len(compared) < 2:
        return _empty(viewer)
    params = [flatten(c.run.params) for c in compared]
    param_keys = _differing(params, show_all)
    param_rows = [(k, [fmt.value(p.get(k)) for p in params]) for k in param_keys]
    if any("config" in c.run.withheld for c in compared):
        shown = ["too large to show" if "config" in c.run.withheld else "" for c in compared]
        param_rows.append(("(config)", shown))
    tags = [dict(c.run.tags) for c in compared]
    tag_rows = [(k, [t.get(k, "") for t in tags]) for k in _differing(tags, show_all)]
    lasts = [{s.key: s.last_value for s in c.summaries} for c in compared]
    metric_keys = list(dict.fromkeys(k for last in lasts for k in last))
    # System metrics (the SDK's system/ keys) after the training metrics, never charted first.
    system_keys = [k for k in metric_keys if is_system_metric(k)]
    training_keys = [k for k in metric_keys if not is_system_metric(k)]
    metric_keys = training_keys + system_keys
    metric_rows = [(k, [fmt.number(last.get(k)) for last in lasts]) for k in metric_keys]
    shared = {k for k in training_keys if all(k in last for last in lasts)}
    layout = chart_layout(merged_groups(c.run.params for c in compared), training_keys)
    chosen = ([c for c in layout if shared.intersection(c.keys)] or layout)[:DEFAULT_CHARTS]

    runs_list = el(
        "ul",
        [
            el(
                "li",
                el("a", c.run.name, href=f"/runs/{c.run.id}"),
                f" ({c.project.name}, {c.run.status})",
                data_run=c.run.id,
                data_label=c.run.name,
                data_counts=json.dumps({s.key: s.count for s in c.summaries}),
            )
            for c in compared
        ],
        id="compare-runs",
    )
    toggle = [("run", c.run.id) for c in compared]
    other = urlencode([*toggle, *([] if show_all else [("all", "1")])])
    if charts_available:
        picker = el(
            "fieldset",
            el("legend", "Metrics to chart"),
            [_choice(chart, chosen) for chart in layout],
            _system_picker(system_keys),
            id="metric-picker",
            class_="picker",
        )
        charts = join(
            chart_controls(),
            picker,
            el("div", class_="charts", id="charts"),
            el("div", class_="charts", id="system-charts", aria_label="System metrics"),
        )
    else:
        charts = library_missing()
    content = join(
        el("h1", f"Compare {len(compared)} runs"),
        runs_list,
        _tensorboard(compared, tensorboard_runs),
        el("section", el("h2", "Metrics"), charts),
        image_compare_section(),  # one image key across the runs (images.js)
        el(
            "p",
            el(
                "a",
                "Only what differs" if show_all else "Show every param and tag",
                href=f"/compare?{other}",
            ),
        ),
        _table(
            "Params that differ" if not show_all else "Params",
            compared,
            param_rows,
            "param-diff",
            "Every param is the same in these runs.",
        ),
        _table(
            "Tags that differ" if not show_all else "Tags",
            compared,
            tag_rows,
            "tag-diff",
            "Every tag is the same in these runs.",
        ),
        _table("Last values", compared, metric_rows, "metric-last", "No metrics logged."),
    )
    return page(
        "Compare",
        viewer,
        content,
        active="compare",
        scripts=(
            *(("compare.js",) if charts_available else ()),
            COMPARE_SCRIPT,
            *((TENSORBOARD_SCRIPT,) if tensorboard_runs else ()),
        ),
        styles=(CHART_STYLES,) if charts_available else (),
    )
