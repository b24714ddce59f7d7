"""A project's Tasks tab (its queued, running and finished tasks, filtered by state) and a
task's page (command, code, environment names, attempts, the log followed live, cancel
and retry). Rendered on the server; ``task.js`` follows the log and sends the changes."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from safeboard.agents.repository import Agent
from safeboard.jobs.repository import Attempt
from safeboard.jobs.service import TaskDetail
from safeboard.projects.repository import Project
from safeboard.vocabulary import FINAL_TASK_STATES, TaskState
from safeboard.web import format as fmt
from safeboard.web.html import Child, Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = [
    "STATE_FILTERS",
    "TaskPageView",
    "TasksView",
    "project_tabs",
    "render_task",
    "render_tasks",
    "task_link",
]

# The Tasks tab's filters: a label and the states it shows (the URL repeats ``state``).
STATE_FILTERS: tuple[tuple[str, tuple[TaskState, ...]], ...] = (
    ("waiting", (TaskState.QUEUED,)),
    ("running", (TaskState.LEASED, TaskState.STARTING, TaskState.RUNNING,
                 TaskState.CANCELLING)),
    ("succeeded", (TaskState.SUCCEEDED,)),
    ("failed or lost", (TaskState.FAILED, TaskState.LOST)),
    ("cancelled", (TaskState.CANCELLED,)),
)  # fmt: skip
FINAL = frozenset(state.value for state in FINAL_TASK_STATES)
COMMAND_CHARS = 120  # a command longer than this is cut in the table (whole on its page)


def project_tabs(project: str, active: str) -> Markup:
    """ "Runs", "Tasks" and "Trash" under a project's name: the project page, its Tasks
    tab, its trash and settings (web/trash_page.py)."""
    tabs = (
        ("runs", "Runs", f"/projects/{project}"),
        ("tasks", "Tasks", f"/projects/{project}/tasks"),
        ("trash", "Trash", f"/projects/{project}/trash"),
    )
    return el(
        "nav",
        el(
            "ul",
            [
                el("li", el("a", label, href=href, aria_current="page" if key == active else None))
                for key, label, href in tabs
            ],
        ),
        aria_label="Project",
        class_="tabs",
    )


def task_link(task_id: int | None) -> Markup:
    """The run page's way back to the task that made the run (nothing for other runs)."""
    if task_id is None:
        return Markup("")
    link = el("a", f"task {task_id}", href=f"/tasks/{task_id}")
    return el("p", "Made by ", link, ": its command, attempts and log.", class_="hint",
              data_testid="run-task")  # fmt: skip


def _badge(state: str, **attributes: object) -> Markup:
    return el("span", state, class_=f"status task-{state}", **attributes)


def _duration(attempt: Attempt | None, now: datetime) -> str:
    """How long the current attempt ran (or runs); "" before it started."""
    if attempt is None or attempt.started_at is None:
        return ""
    return fmt.duration(attempt.started_at, attempt.ended_at, now)


def _agent_name(agents: dict[str, Agent], agent_id: str) -> str:
    found = agents.get(agent_id)
    if found is None:
        return agent_id
    if found.hostname and found.hostname != found.name:
        return f"{found.name} ({found.hostname})"
    return found.name


def _command(command: list[str]) -> str:
    return shlex.join(command)


@dataclass(frozen=True)
class TasksView:
    project: Project
    tasks: list[TaskDetail]
    latest: dict[int, Attempt]  # each task's current attempt
    agents: dict[str, Agent]
    states: list[str]  # the filter ([]: every state)
    before: int | None
    next_before: int | None
    now: datetime


def _tasks_link(view: TasksView, states: list[str], before: int | None = None) -> str:
    pairs = [("state", s) for s in states] + ([("before", str(before))] if before else [])
    query = urlencode(pairs)
    return f"/projects/{view.project.name}/tasks" + (f"?{query}" if query else "")


def _filters(view: TasksView) -> Markup:
    chosen = set(view.states)
    links: list[Child] = [el("a", "all", href=_tasks_link(view, []),
                             aria_current="true" if not chosen else None)]  # fmt: skip
    for label, states in STATE_FILTERS:
        values = [s.value for s in states]
        links += [" · ", el("a", label, href=_tasks_link(view, values),
                            aria_current="true" if chosen == set(values) else None)]  # fmt: skip
    return el("p", "Show: ", links, class_="hint", data_testid="task-filters")


def _task_row(view: TasksView, detail: TaskDetail) -> Markup:
    task = detail.task
    attempt = view.latest.get(task.id)
    command = _command(task.command)
    short = command if len(command) <= COMMAND_CHARS else command[: COMMAND_CHARS - 1] + "…"
    return el(
        "tr",
        el("th", el("a", f"#{task.id}", href=f"/tasks/{task.id}"), scope="row"),
        el("td", _badge(task.state)),
        el("td", el("code", short), class_="command", title=command),
        el("td", _agent_name(view.agents, attempt.agent_id) if attempt else ""),
        el("td", str(task.gpus), class_="num"),
        el("td", str(task.attempt), class_="num"),
        el("td", el("time", fmt.timestamp(task.created_at), datetime=task.created_at.isoformat())),
        el("td", _duration(attempt, view.now), class_="num"),
        data_task=task.id,
        data_run=task.run_id,
    )


def render_tasks(view: TasksView, viewer: Viewer) -> str:
    project = view.project
    heading = join(
        el("nav", el("a", "Projects", href="/"), " /", aria_label="Breadcrumb", class_="crumbs"),
        el("h1", project.name),
        project_tabs(project.name, "tasks"),
        el("p", "", id="live", role="status", aria_live="polite", class_="live"),
    )
    headers = ["Task", "State", "Command", "Agent", "GPUs", "Attempts", "Submitted", "Duration"]
    body: list[Child] = [heading, _filters(view)]
    if not view.tasks:
        body.append(el(
            "p",
            "No task here. " if view.states or view.before else "No tasks yet. ",
            "Queue one from a project's directory: ",
            el("code", f"safeboard task submit --project {project.name} -- python train.py"),
            class_="empty", data_testid="no-tasks",
        ))  # fmt: skip
    else:
        body.append(el("div", el("table",
            el("caption", "Tasks", class_="visually-hidden"),
            el("thead", el("tr", [el("th", h, scope="col") for h in headers])),
            el("tbody", [_task_row(view, d) for d in view.tasks]),
            id="tasks", class_="runs",
        ), class_="scroll"))  # fmt: skip
    pager = [
        el("a", "Newest tasks", href=_tasks_link(view, view.states)) if view.before else None,
        el("a", "Older tasks", href=_tasks_link(view, view.states, view.next_before), rel="next")
        if view.next_before else None,
    ]  # fmt: skip
    body.append(el("nav", pager, aria_label="Pages", class_="pager"))
    meta = {"project": project.name, "first-page": "false" if view.before else "true"}
    return page(f"{project.name}: tasks", viewer, body, active="projects", scripts=("tasks.js",),
                meta=meta)  # fmt: skip


@dataclass(frozen=True)
class TaskPageView:
    detail: TaskDetail
    agents: dict[str, Agent]
    run_name: str
    can_change: bool  # may cancel and retry (the project's editors and owners, admins)
    now: datetime


def _facts(view: TaskPageView) -> Markup:
    task = view.detail.task
    retry = "no" if not task.retry_on_failure else "yes"
    pairs: list[tuple[str, Child]] = [
        ("State", _badge(task.state, id="task-state", data_testid="task-state")),
        ("Run", el("a", view.run_name, href=f"/runs/{task.run_id}", data_testid="task-run")),
        ("Submitted", fmt.timestamp(task.created_at)),
        ("Finished", fmt.timestamp(task.finished_at) or "—"),
        ("GPUs", str(task.gpus)),
        ("Labels", ", ".join(task.labels) or "—"),
        ("Priority", str(task.priority)),
        ("Maximum duration", f"{task.max_seconds} s" if task.max_seconds else "none"),
        ("Retries", f"{task.max_lost_retries} if lost; on failure: {retry}"),
    ]
    if task.retry_of is not None:
        pairs.append(("Retry of", el("a", f"task {task.retry_of}", href=f"/tasks/{task.retry_of}")))
    if task.reason:
        pairs.append(("Reason", el("span", task.reason, id="task-reason")))
    if view.detail.waiting_reason:
        pairs.append(("Waiting", el("span", view.detail.waiting_reason, id="task-waiting",
                                    data_testid="task-waiting")))  # fmt: skip
    if task.cancel_requested_by:
        pairs.append(("Cancelled by", task.cancel_requested_by))
    return el("dl", [el("div", el("dt", k), el("dd", v)) for k, v in pairs], class_="facts")


def _code(view: TaskPageView) -> Markup:
    task = view.detail.task
    if task.code_sha256 is None:
        code: Child = el("p", "No code: the command runs in an empty directory of the agent's "
                         "machine (submitted with --no-code).", class_="hint")  # fmt: skip
    else:
        code = el("p", el("a", "Download the code", href=f"/api/v1/tasks/{task.id}/code",
                          id="code-download"),
                  " (tar.gz, SHA-256 ", el("code", task.code_sha256[:12] + "…",
                                           title=task.code_sha256), ")")  # fmt: skip
    return el("section", el("h2", "Command"),
              el("pre", el("code", _command(task.command)), data_testid="task-command"),
              code, class_="panel")  # fmt: skip


def _environment(view: TaskPageView) -> Markup:
    """Plain variables with their values (shown to the project's readers at submit, never
    a secret); secrets by name only: their values are never sent to a browser (S14)."""
    task = view.detail.task
    rows = [el("tr", el("th", name, scope="row"), el("td", el("code", value)))
            for name, value in sorted(task.env.items())]  # fmt: skip
    rows += [el("tr", el("th", name, scope="row"), el("td", "secret: its value is not shown",
                                                      class_="hint"), data_secret=name)
             for name in view.detail.secret_names]  # fmt: skip
    table = el("table", el("tbody", rows), data_testid="task-env") if rows else el(
        "p", "No environment variables.", class_="hint")  # fmt: skip
    return el("section", el("h2", "Environment"), table, class_="panel")


def _attempts(view: TaskPageView) -> Markup:
    headers = ["Attempt", "Agent", "GPUs", "State", "Started", "Ended", "Exit", "Reason"]
    rows = []
    for a in view.detail.attempts:
        exit_text = "" if a.exit_code is None else str(a.exit_code)
        if a.signal is not None:
            exit_text = f"signal {a.signal}"
        rows.append(el(
            "tr",
            el("th", str(a.attempt), scope="row"),
            el("td", _agent_name(view.agents, a.agent_id), data_agent=a.agent_id),
            el("td", ", ".join(a.gpu_uuids) or "—"),
            el("td", _badge(a.state)),
            el("td", fmt.timestamp(a.started_at)),
            el("td", fmt.timestamp(a.ended_at)),
            el("td", exit_text, class_="num", data_testid="exit-code"),
            el("td", a.reason),
            data_attempt=a.attempt,
        ))  # fmt: skip
    if not rows:
        return el("section", el("h2", "Attempts"), el("p", "No agent has taken it yet.",
                                                      class_="hint"), id="attempts")  # fmt: skip
    return el("section", el("h2", "Attempts"), el("div", el("table",
        el("thead", el("tr", [el("th", h, scope="col") for h in headers])),
        el("tbody", rows), class_="runs"), class_="scroll"), id="attempts")  # fmt: skip


def _actions(view: TaskPageView) -> Markup:
    if not view.can_change:
        return Markup("")
    final = view.detail.task.state in FINAL
    return el(
        "div",
        el("button", "Cancel task", type="button", id="cancel-task", class_="danger",
           hidden=final),
        el("button", "Retry as a new task", type="button", id="retry-task", hidden=not final),
        el("span", "", id="action-status", role="status", aria_live="polite"),
        class_="toolbar",
    )  # fmt: skip


def _log(view: TaskPageView) -> Markup:
    attempts = [a.attempt for a in view.detail.attempts]
    waiting = "Waiting for an agent to take the task…" if not attempts else "Reading the log…"
    choose = el("label", "Attempt", el("select", [el("option", "latest", value="")] + [
        el("option", str(n), value=str(n)) for n in attempts], id="log-attempt"),
    ) if len(attempts) > 1 else None  # fmt: skip
    return el(
        "section",
        el("h2", "Log"),
        el(
            "div",
            el("button", "Pause", type="button", id="log-follow", aria_pressed="true",
               class_="secondary"),
            el("label", "Search", el("input", type="search", id="log-search", maxlength="200",
                                     placeholder="text in a line")),
            choose,
            el("span", waiting, id="log-status", role="status", aria_live="polite", class_="hint"),
            class_="toolbar",
        ),
        el("ol", id="log", class_="log", data_testid="task-log", aria_label="Output lines"),
        id="log-section",
    )  # fmt: skip


def render_task(view: TaskPageView, viewer: Viewer) -> str:
    task = view.detail.task
    project = view.detail.project
    content = join(
        el("nav", el("a", "Projects", href="/"), " / ",
           el("a", project, href=f"/projects/{project}"), " / ",
           el("a", "Tasks", href=f"/projects/{project}/tasks"),
           aria_label="Breadcrumb", class_="crumbs"),
        el("h1", f"Task {task.id}"),
        _actions(view),
        _facts(view),
        el("div", _code(view), _environment(view), class_="panels"),
        _log(view),
        _attempts(view),
    )  # fmt: skip
    meta = {"task-id": str(task.id), "task-state": task.state}
    return page(f"Task {task.id}", viewer, content, active="projects", scripts=("task.js",),
                meta=meta)  # fmt: skip
