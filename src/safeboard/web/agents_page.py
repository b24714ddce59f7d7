"""The Agents page (admins): each agent's machine (host, version, GPUs and which are
busy), labels, last call, current tasks and a revoke button; a form that mints a join
string, shown once with a copy button. Changes go through the API (agents.js)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeboard.agents.queries import CurrentTask
from safeboard.agents.repository import Agent
from safeboard.web import format as fmt
from safeboard.web.html import Markup, el, join
from safeboard.web.layout import Viewer, page

__all__ = ["render_agents"]

TTL_CHOICES = (("30 minutes", 1800), ("1 hour", 3600), ("1 day", 86400), ("7 days", 604800))


def _gpu(gpu: dict[str, Any], busy: set[str]) -> Markup:
    memory = gpu.get("memory_mib")
    size = f", {memory / 1024:.0f} GiB" if isinstance(memory, int) and memory else ""
    held = str(gpu.get("uuid", "")) in busy
    return el(
        "li",
        f"{gpu.get('index', '?')}: {gpu.get('model') or 'GPU'}{size}",
        " ",
        el(
            "span",
            "busy" if held else "idle",
            class_="status status-running" if held else "status status-finished",
        ),
        title=str(gpu.get("uuid", "")),
        data_testid="gpu",
    )


def _tasks(work: Sequence[CurrentTask]) -> Markup | str:
    if not work:
        return "none"
    return el(
        "ul",
        [
            el(
                "li",
                el("a", f"task {t.task_id}", href=f"/runs/{t.run_id}"),
                f" ({t.project}, attempt {t.attempt}, {t.state})",
            )
            for t in work
        ],
        class_="plain",
        data_testid="current-tasks",
    )


def _row(agent: Agent, work: Sequence[CurrentTask]) -> Markup:
    inventory = agent.inventory
    busy = {uuid for t in work for uuid in t.gpu_uuids}
    gpus = list(inventory.get("gpus") or [])
    labels = sorted({*agent.labels, *(inventory.get("labels") or [])})
    revoked = agent.revoked_at is not None
    seen = fmt.timestamp(agent.last_seen_at) or "never"
    return el(
        "tr",
        el("th", agent.name, el("br"), el("code", agent.id), scope="row"),
        el("td", agent.pool),
        el("td", agent.hostname, el("br"), el("span", agent.version, class_="hint")),
        el("td", el("ul", [_gpu(g, busy) for g in gpus], class_="plain") if gpus else "none"),
        el("td", ", ".join(labels) or "—"),
        el("td", seen, el("br"), el("span", agent.last_address or "", class_="hint")),
        el("td", _tasks(work)),
        el(
            "td",
            f"revoked {fmt.timestamp(agent.revoked_at)} by {agent.revoked_by or ''}"
            if revoked
            else el(
                "button",
                "Revoke",
                type="button",
                class_="danger",
                data_action="revoke",
                data_agent=agent.id,
                data_name=agent.name,
                aria_label=f"Revoke {agent.name}",
            ),
        ),
        data_agent=agent.id,
        class_="revoked" if revoked else None,
    )


def _join_form() -> Markup:
    return el(
        "form",
        el("h2", "Add an agent"),
        el(
            "p",
            "A join string enrolls one machine, once, before it expires. On the machine: ",
            el("code", "safeboard agent join '<join string>'"),
            ", then ",
            el("code", "safeboard agent run"),
            ".",
            class_="hint",
        ),
        el(
            "label",
            "Pool",
            el(
                "input",
                name="pool",
                required=True,
                maxlength="64",
                value="default",
                pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*",
            ),
        ),
        el("label", "Labels (comma-separated)", el("input", name="labels", maxlength="2000")),
        el(
            "label",
            "Expires after",
            el(
                "select",
                [el("option", t, value=str(s), selected=s == 3600) for t, s in TTL_CHOICES],
                name="ttl_seconds",
            ),
        ),
        el("button", "Create a join string", type="submit"),
        id="join-form",
        class_="stack",
    )


def _join_box() -> Markup:
    return el(
        "section",
        el("h2", "Join string"),
        el(
            "p",
            "Shown once: it cannot be retrieved again. It expires at ",
            el("span", "", id="join-expires"),
            " (UTC) and carries the server's CA pin, so the machine needs no other file.",
        ),
        el("p", el("code", "", id="join-string", data_testid="join-string")),
        el("button", "Copy", type="button", id="copy-join", class_="secondary"),
        id="join",
        class_="secret",
        hidden=True,
        tabindex="-1",
    )


def render_agents(viewer: Viewer, listed: Sequence[tuple[Agent, Sequence[CurrentTask]]]) -> str:
    rows = [_row(agent, work) for agent, work in listed]
    table = el(
        "div",
        el(
            "table",
            el(
                "thead",
                el(
                    "tr",
                    [
                        el("th", h, scope="col")
                        for h in (
                            "Agent",
                            "Pool",
                            "Host",
                            "GPUs",
                            "Labels",
                            "Last seen",
                            "Current tasks",
                            "",
                        )
                    ],
                ),
            ),
            el("tbody", rows),
            class_="runs",
            id="agents",
        ),
        class_="scroll",
    )
    content = join(
        el("h1", "Agents"),
        el(
            "p",
            "Machines that run the projects' queued tasks. Revoking one refuses its next "
            "call and requeues what it was running.",
            class_="hint",
        ),
        el("p", "", id="status", role="status", aria_live="polite"),
        _join_box(),
        table if rows else el("p", "No agent has joined yet.", class_="empty"),
        _join_form(),
    )
    return page("Agents", viewer, content, active="agents", scripts=("agents.js",))
