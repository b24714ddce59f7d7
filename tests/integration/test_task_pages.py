"""The pages of tasks through the real app on SQLite and PostgreSQL (issue 16): a
project's Tasks tab (states, agent, GPUs, attempts; filtered by state, 50 a page), a
task's page (command, code download, environment names, attempts with agent and exit
code; a secret's value nowhere in the HTML or the JSON its script fetches; cancel and
retry for writers only), 404 for whoever may not read the project, and the run page's
link back to its task."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from html import unescape

import pytest

from safeboard.auth.permissions import ProjectRole, Role
from safeboard.auth.principal import Principal
from safeboard.cli.local import Local
from safeboard.jobs.queue import AgentEvent
from safeboard.jobs.spec import TaskSpec
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.support.agents import add_agents

pytestmark = pytest.mark.anyio

HTML = {"Accept": "text/html,application/xhtml+xml"}
SECRET = "hunter2-very-secret-value-7f3a9c"
ARCHIVE = b"\x1f\x8b" + bytes(range(256)) * 4
DIGEST = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    for name in ("alice", "bob", "carol"):
        built.user(name)
    alice = principal(built, "alice")
    project = built.services.projects.create(alice, "p", "")
    built.services.projects.set_grant(alice, project.id, "bob", ProjectRole.VIEWER)
    add_agents(built.services.engine, "gpu-box")
    yield built
    await built.close()


def principal(world: World, name: str) -> Principal:
    return Local(world.services).principal(name)


def submit(world: World, *command: str, **spec: object) -> int:
    detail = world.services.tasks.submit(principal(world, "alice"), "p",
                                         TaskSpec(list(command), **spec))  # type: ignore[arg-type]  # fmt: skip
    return detail.task.id


def rows(page: str) -> list[tuple[int, str]]:
    """(task id, state) of each row of the Tasks tab, in order."""
    found = re.findall(r'<tr data-task="(\d+)"[^>]*><th scope="row"><a href="/tasks/\d+">#\d+</a>'
                       r'</th><td><span class="status task-(\w+)">', page)  # fmt: skip
    return [(int(i), state) for i, state in found]


async def test_the_tasks_tab_lists_filters_and_pages(world: World) -> None:
    queue = world.services.queue
    done = submit(world, "python", "train.py", "--lr", "0.1", gpus=1)
    lease = queue.lease("gpu-box", ["GPU-1"], [])
    assert lease is not None
    assert lease.task_id == done
    queue.report(done, 1, "gpu-box", AgentEvent("running", pid=42))
    queue.report(done, 1, "gpu-box", AgentEvent("exited", exit_code=0))
    running = submit(world, "python", "eval.py")
    assert queue.lease("gpu-box", [], []) is not None
    queue.report(running, 1, "gpu-box", AgentEvent("running", pid=43))
    cancelled = submit(world, "sleep", "100")
    world.services.tasks.cancel(principal(world, "alice"), cancelled)
    queued = [submit(world, "echo", str(i)) for i in range(52)]

    alice, _ = await world.signed_in("alice")
    first = await alice.get("/projects/p/tasks", headers=HTML)
    assert first.status_code == 200, first.text
    listed = rows(first.text)
    assert listed[:3] == [(queued[-1], "queued"), (queued[-2], "queued"), (queued[-3], "queued")]
    assert len(listed) == 50
    older = re.search(r'<a href="([^"]+)" rel="next">Older tasks</a>', first.text)
    assert older is not None
    second = await alice.get(unescape(older.group(1)), headers=HTML)
    rest = rows(second.text)
    assert [i for i, _ in listed + rest] == sorted(
        [done, running, cancelled, *queued], reverse=True
    )  # every task once, in order
    assert dict(rest) == {queued[0]: "queued", queued[1]: "queued", cancelled: "cancelled",
                          running: "running", done: "succeeded"}  # fmt: skip
    # The agent, GPUs and attempts of a task that ran.
    row = re.search(rf'<tr data-task="{done}"[^>]*>.*?</tr>', second.text)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert "python train.py --lr 0.1" in cells[1]
    assert cells[2:5] == ["gpu-box", "1", "1"]

    running_only = await alice.get("/projects/p/tasks?state=leased&state=starting&state=running"
                                   "&state=cancelling", headers=HTML)  # fmt: skip
    assert rows(running_only.text) == [(running, "running")]
    finished = await alice.get("/projects/p/tasks?state=succeeded", headers=HTML)
    assert rows(finished.text) == [(done, "succeeded")]
    assert 'aria-current="true">succeeded</a>' in finished.text
    for path in ("/projects/p/tasks?state=sleeping", "/projects/p/tasks?before=0",
                 "/projects/p/tasks?before=99999999999999999999", "/projects/p/tasks?state=",
                 "/tasks/abc", "/tasks/0", "/tasks/99999999999999999999", "/tasks/-1"):  # fmt: skip
        bad = await alice.get(path, headers=HTML)
        assert bad.status_code in (400, 404, 422), path
        assert bad.headers["content-type"].startswith("text/html"), path
    # The project page has the tab; a stranger gets 404 for both.
    runs_page = await alice.get("/projects/p", headers=HTML)
    assert '<a href="/projects/p/tasks">Tasks</a>' in runs_page.text
    carol, _ = await world.signed_in("carol")
    assert (await carol.get("/projects/p/tasks", headers=HTML)).status_code == 404
    assert (await carol.get("/projects/p/tasks")).json()["error"]["code"] == "not_found"


async def test_the_task_page_shows_names_never_a_secrets_value(world: World) -> None:
    alice_key = world.key("alice")
    api = world.client(Authorization=f"Bearer {alice_key}")
    assert (await api.put(f"/api/v1/projects/p/code/{DIGEST}", content=ARCHIVE)).status_code == 201
    made = await api.post("/api/v1/projects/p/tasks", json={
        "command": ["python", "train.py", "--note", "<b>bold</b>"], "env": {"LR": "0.1"},
        "secrets": {"WANDB_API_KEY": SECRET}, "code_sha256": DIGEST, "gpus": 1,
        "labels": ["h100"], "name": "sweep-1",
    })  # fmt: skip
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    queue = world.services.queue
    assert queue.lease("gpu-box", ["GPU-1"], ["h100"]) is not None
    world.services.task_logs.append(task_id, 1, "gpu-box", 1, [("stdout", "epoch 1")])
    queue.report(task_id, 1, "gpu-box", AgentEvent("exited", exit_code=3))

    alice, _ = await world.signed_in("alice")
    shown = await alice.get(f"/tasks/{task_id}", headers=HTML)
    assert shown.status_code == 200, shown.text
    html = shown.text
    assert "python train.py --note &#x27;&lt;b&gt;bold&lt;/b&gt;&#x27;" in html  # text, escaped
    assert f'href="/api/v1/tasks/{task_id}/code"' in html
    assert '<th scope="row">LR</th>' in html
    assert "0.1" in html
    assert 'data-secret="WANDB_API_KEY"' in html
    assert re.search(r'<tr data-attempt="1">.*gpu-box.*GPU-1.*failed.*>3</td>', html)
    assert '<a href="/runs/' in html
    assert "sweep-1" in html
    assert 'id="retry-task"' in html
    assert 'id="cancel-task"' in html
    # The JSON the page's script fetches: names, never the value.
    fetched = [await alice.get(f"/api/v1/tasks/{task_id}"),
               await alice.get(f"/api/v1/tasks/{task_id}/logs?after=0&limit=100")]  # fmt: skip
    assert fetched[0].json()["secret_names"] == ["WANDB_API_KEY"]
    assert fetched[1].json()["lines"][0]["text"] == "epoch 1"
    for text in [html, *(answer.text for answer in fetched)]:
        assert SECRET not in text

    # A viewer reads the page and downloads the code, without the buttons.
    bob, _ = await world.signed_in("bob")
    viewed = await bob.get(f"/tasks/{task_id}", headers=HTML)
    assert viewed.status_code == 200
    assert 'id="retry-task"' not in viewed.text
    assert 'id="cancel-task"' not in viewed.text
    code = await bob.get(f"/api/v1/tasks/{task_id}/code")
    assert code.status_code == 200
    assert code.content == ARCHIVE
    assert code.headers["content-disposition"] == (
        f'attachment; filename="task-{task_id}-{DIGEST[:12]}.tar.gz"'
    )
    assert code.headers["x-code-sha256"] == DIGEST
    # Whoever may not read the project: 404 for the page, the code and the API alike.
    carol, _ = await world.signed_in("carol")
    for path in (f"/tasks/{task_id}", f"/api/v1/tasks/{task_id}/code"):
        assert (await carol.get(path, headers=HTML)).status_code == 404, path
    assert (await carol.get("/tasks/999999", headers=HTML)).status_code == 404
    # A task without code: no link, and the route says so.
    plain = submit(world, "nvidia-smi")
    page = await alice.get(f"/tasks/{plain}", headers=HTML)
    assert f"/api/v1/tasks/{plain}/code" not in page.text
    assert "No code" in page.text
    missing = await alice.get(f"/api/v1/tasks/{plain}/code")
    assert missing.status_code == 404
    assert "has no code" in missing.json()["error"]["message"]


async def test_the_run_page_links_back_to_its_task(world: World) -> None:
    task_id = submit(world, "python", "train.py")
    detail = world.services.tasks.get(principal(world, "alice"), task_id)
    alice, _ = await world.signed_in("alice")
    page = await alice.get(f"/runs/{detail.task.run_id}", headers=HTML)
    assert page.status_code == 200
    assert f'<a href="/tasks/{task_id}">task {task_id}</a>' in page.text
    run = world.services.runs.create(principal(world, "alice"), "p", name="by-hand")
    plain = await alice.get(f"/runs/{run.id}", headers=HTML)
    assert 'data-testid="run-task"' not in plain.text


async def test_the_list_api_behind_the_tab_filters_by_state_and_pages(world: World) -> None:
    """``GET /api/v1/tasks``: ``state`` (repeated), ``before`` and ``limit``, whose pages
    hold every task once, newest first; a viewer reads them, a stranger gets 404."""
    ids = [submit(world, "echo", str(i)) for i in range(7)]
    for task_id in ids[:3]:
        world.services.tasks.cancel(principal(world, "alice"), task_id)
    bob = world.client(Authorization=f"Bearer {world.key('bob')}")
    seen: list[int] = []
    before = None
    while True:
        query = "/api/v1/tasks?project=p&limit=2" + (f"&before={before}" if before else "")
        page = (await bob.get(query)).json()
        seen += [t["id"] for t in page["tasks"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == sorted(ids, reverse=True)
    both = await bob.get("/api/v1/tasks?project=p&state=cancelled&state=queued&limit=500")
    assert [t["id"] for t in both.json()["tasks"]] == sorted(ids, reverse=True)
    cancelled = await bob.get("/api/v1/tasks?project=p&state=cancelled")
    assert [t["id"] for t in cancelled.json()["tasks"]] == sorted(ids[:3], reverse=True)
    assert cancelled.json()["next_before"] is None
    assert (await bob.get("/api/v1/tasks?project=p&state=asleep")).status_code == 422
    carol = world.client(Authorization=f"Bearer {world.key('carol')}")
    assert (await carol.get("/api/v1/tasks?project=p")).status_code == 404
    assert (await carol.get("/api/v1/tasks")).json()["tasks"] == []  # no project of hers
