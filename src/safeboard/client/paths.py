"""Every URL path of safeboard's API, built in one place.

Each variable part is one path segment, quoted with ``quote(part, safe="")``: a value
such as ``a b %?#`` travels as ``a%20b%20%25%3F%23`` and the server, which decodes the
path once, reads it back unchanged. A ``/`` (``%2F``) is decoded before routing, so a
value holding one reaches another route or none: a project's name is checked here against
the names the server makes (``project``), and ids and keys hold no ``/``. Query values
never appear here: they go through httpx's ``params``, which quotes them (metric keys
travel there: ``/history?metric=train/loss``).
"""

from __future__ import annotations

from urllib.parse import quote

from safeboard import errors, validation

__all__ = [
    "API",
    "agent_enroll",
    "agent_hello",
    "agent_lease",
    "agent_revoke",
    "agent_task_code",
    "agent_task_events",
    "agent_task_heartbeat",
    "agent_task_logs",
    "agents",
    "artifact",
    "artifact_content",
    "artifact_ids",
    "artifact_preview",
    "audit",
    "grant",
    "invite_page",
    "join_tokens",
    "key",
    "keys",
    "metric_history",
    "metric_points",
    "metrics",
    "project",
    "project_code",
    "project_runs",
    "project_tasks",
    "projects",
    "run",
    "run_artifacts",
    "run_ids",
    "run_page",
    "segment",
    "session",
    "sign_in",
    "sign_out",
    "task",
    "task_action",
    "task_logs",
    "tasks",
    "user",
    "users",
]

API = "/api/v1"


def segment(value: str | int) -> str:
    """One path segment, every reserved character quoted (``/`` too)."""
    return quote(str(value), safe="")


def projects() -> str:
    return f"{API}/projects"


def agents() -> str:
    """What admins call: the agent list."""
    return f"{API}/agents"


def join_tokens() -> str:
    return f"{API}/agents/join-tokens"


def agent_revoke(agent_id: str) -> str:
    return f"{API}/agents/{segment(agent_id)}/revoke"


def agent_enroll() -> str:
    """What an agent calls (``/agent/``, singular): enrollment, with the join token."""
    return f"{API}/agent/enroll"


def agent_hello() -> str:
    return f"{API}/agent/hello"


def agent_lease() -> str:
    """Where an agent asks for a task (long-poll)."""
    return f"{API}/agent/lease"


def agent_task_heartbeat(task_id: int, attempt: int) -> str:
    return f"{API}/agent/tasks/{segment(task_id)}/{segment(attempt)}/heartbeat"


def agent_task_events(task_id: int, attempt: int) -> str:
    return f"{API}/agent/tasks/{segment(task_id)}/{segment(attempt)}/events"


def agent_task_code(task_id: int, attempt: int) -> str:
    """The code archive of an attempt leased to this agent."""
    return f"{API}/agent/tasks/{segment(task_id)}/{segment(attempt)}/code"


def agent_task_logs(task_id: int, attempt: int) -> str:
    """Where an agent ships a batch of an attempt's output."""
    return f"{API}/agent/tasks/{segment(task_id)}/{segment(attempt)}/logs"


def project(name: str) -> str:
    """A project's path, or InvalidRequest for a name no project can have (``a/b``, ``..``):
    refused here, as the server refuses it when a project is made, never sent."""
    problem = validation.name_problem(name)
    if problem is not None:
        raise errors.InvalidRequest(f"project {name[:120]!r}: {problem}")
    return f"{API}/projects/{segment(name)}"


def grant(project_name: str, username: str) -> str:
    return f"{project(project_name)}/grants/{segment(username)}"


def project_runs(project_name: str) -> str:
    """A project's runs: filtered, sorted by any column, keyset pages (``?sort=...``)."""
    return f"{project(project_name)}/runs"


def project_tasks(project_name: str) -> str:
    """Where a task is submitted to a project."""
    return f"{project(project_name)}/tasks"


def project_code(project_name: str, sha256: str) -> str:
    """A code archive of a project, by its SHA-256 (GET: held?; PUT: upload)."""
    return f"{project(project_name)}/code/{segment(sha256)}"


def tasks() -> str:
    """Tasks of every project you can read (``?project=&state=&before=&limit=``)."""
    return f"{API}/tasks"


def task(task_id: int) -> str:
    return f"{API}/tasks/{segment(task_id)}"


def task_logs(task_id: int) -> str:
    """A task's output (``?attempt=&after=&limit=&wait=``)."""
    return f"{task(task_id)}/logs"


def task_action(task_id: int, action: str) -> str:
    """``cancel`` or ``retry``."""
    return f"{task(task_id)}/{segment(action)}"


def run(run_id: str) -> str:
    return f"{API}/runs/{segment(run_id)}"


def run_ids() -> str:
    """Runs whose id starts with a prefix (``?prefix=``): resolving ids as printed."""
    return f"{API}/run-ids"


def metrics(run_id: str) -> str:
    return f"{run(run_id)}/metrics"


def metric_history(run_id: str) -> str:
    """Histories of a run's metrics: the keys go in the query (``?metric=a&metric=b``)."""
    return f"{run(run_id)}/history"


def metric_points(run_id: str) -> str:
    """Every point of one metric: its key goes in the query (``?metric=``)."""
    return f"{run(run_id)}/points"


def run_artifacts(run_id: str) -> str:
    return f"{run(run_id)}/artifacts"


def artifact(artifact_id: str) -> str:
    return f"{API}/artifacts/{segment(artifact_id)}"


def artifact_content(artifact_id: str) -> str:
    return f"{artifact(artifact_id)}/content"


def artifact_preview(artifact_id: str) -> str:
    return f"{artifact(artifact_id)}/preview"


def keys() -> str:
    return f"{API}/keys"


def key(key_id: str) -> str:
    return f"{API}/keys/{segment(key_id)}"


def users() -> str:
    return f"{API}/users"


def user(username: str) -> str:
    return f"{API}/users/{segment(username)}"


def audit() -> str:
    return f"{API}/audit"


def artifact_ids() -> str:
    """Artifacts whose id starts with a prefix (``?prefix=``)."""
    return f"{API}/artifact-ids"


def session() -> str:
    """The caller's own session or key: who they are (``GET``)."""
    return f"{API}/auth/session"


def sign_in() -> str:
    return f"{API}/auth/login"


def sign_out() -> str:
    return f"{API}/auth/logout"


# Dashboard pages (safeboard.web.routes): the links the SDK and the CLI print.


def run_page(run_id: str) -> str:
    """A run's page in the dashboard."""
    return f"/runs/{segment(run_id)}"


def invite_page(token: str) -> str:
    """The invitation page; the token rides in the fragment, which no request carries."""
    return f"/invite#token={segment(token)}"
