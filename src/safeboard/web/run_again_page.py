""" "Run again" (issue 16): the form that queues a new task from a task's run, with its
command (one argument a line), its parameters (the config its script received, each leaf
editable with its kind kept) and its resources. The new task keeps the old one's code
snapshot, environment and secrets, and gets its own task token as every task does.
run_again.js sends ``POST /api/v1/tasks/{id}/run-again`` and opens the new run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from safeboard.jobs.repository import Task
from safeboard.projects.repository import Project
from safeboard.runs.repository import Run
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = ["render_run_again", "run_again_link"]


def run_again_link(run_id: str) -> Markup:
    """The run page's element: shown to those who may submit to the run's project, when
    a task made the run."""
    return el(
        "p",
        el(
            "a",
            "Run again",
            href=f"/runs/{run_id}/run-again",
            class_="button",
            data_testid="run-again",
        ),
        " with other parameters, command or resources (same code).",
        class_="hint",
    )


def _leaves(
    doc: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "json"  # lists, empty objects, null: edited as JSON


def _param_input(path: tuple[str, ...], value: Any) -> Markup:
    kind = _kind(value)
    label = ".".join(path)
    common: dict[str, object] = {
        "data_path": json.dumps(path),
        "data_kind": kind,
        "aria_label": label,
    }
    if kind == "bool":
        return el(
            "select",
            el("option", "true", value="true", selected=value is True),
            el("option", "false", value="false", selected=value is False),
            data_original="true" if value else "false",
            **common,
        )
    shown = value if kind == "text" else json.dumps(value)
    return el(
        "input",
        value=shown,
        data_original=shown,
        maxlength="65536",
        inputmode="decimal" if kind == "number" else None,
        **common,
    )


def _params(run: Run) -> Markup:
    rows = [
        el("tr", el("th", ".".join(path), scope="row"), el("td", _param_input(path, value)))
        for path, value in _leaves(dict(run.params))
    ]
    if not rows:
        return el(
            "p",
            "The run's config is empty: the script took no parameters through "
            "safeboard.init(config=...). Change its command-line arguments above.",
            class_="hint",
        )
    return el(
        "table",
        el("thead", el("tr", el("th", "Parameter", scope="col"), el("th", "Value", scope="col"))),
        el("tbody", rows),
        class_="runs run-again-params",
        id="params",
    )


def _number(label: str, name: str, value: int | None, low: int, high: int) -> Markup:
    return el(
        "label",
        label,
        el(
            "input",
            type="number",
            name=name,
            min=str(low),
            max=str(high),
            step="1",
            value="" if value is None else str(value),
        ),
    )


def render_run_again(viewer: Viewer, run: Run, project: Project, task: Task) -> str:
    form = el(
        "form",
        el("h2", "Command"),
        el(
            "label",
            "One argument a line (no shell); the code is the task's snapshot",
            el(
                "textarea",
                "\n".join(task.command),
                name="command",
                rows=str(min(max(len(task.command), 2), 12)),
                required=True,
                spellcheck="false",
            ),
        ),
        el("h2", "Parameters"),
        el(
            "p",
            "The config the script received. Inside the new task, ",
            el("code", "safeboard.init(config=defaults)"),
            " applies the values changed here on top of the script's defaults.",
            class_="hint",
        ),
        _params(run),
        el("h2", "Resources"),
        el(
            "div",
            _number("GPUs", "gpus", task.gpus, 0, 64),
            el(
                "label",
                "Labels (comma-separated)",
                el("input", name="labels", value=", ".join(task.labels), maxlength="2000"),
            ),
            _number(
                "Maximum seconds (empty: none)", "max_seconds", task.max_seconds, 1, 30 * 86400
            ),
            _number("Priority", "priority", task.priority, -1_000_000, 1_000_000),
            el("label", "Run name (empty: task-<id>)", el("input", name="name", maxlength="200")),
            class_="toolbar",
        ),
        el("p", "", id="status", role="status", aria_live="polite"),
        el("button", "Queue the new task", type="submit"),
        id="run-again-form",
        class_="stack",
    )
    content = join(
        el(
            "nav",
            el("a", "Projects", href="/"),
            " / ",
            el("a", project.name, href=f"/projects/{project.name}"),
            " / ",
            el("a", run.name, href=f"/runs/{run.id}"),
            aria_label="Breadcrumb",
            class_="crumbs",
        ),
        el("h1", f"Run again: {run.name}"),
        el(
            "p",
            f"A new task from task {task.id}: the same code snapshot, environment and "
            "secrets, with what you change below. It gets its own run and its own task "
            "token.",
            class_="hint",
        ),
        form,
    )
    meta = {"task-id": str(task.id), "task-params": json.dumps(task.params)}
    return page(
        f"Run again: {run.name}",
        viewer,
        content,
        active="projects",
        scripts=("run_again.js",),
        meta=meta,
    )
