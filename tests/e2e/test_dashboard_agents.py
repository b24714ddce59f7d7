"""Issue 16's Agents page and "Run again" in headless Chromium, against a real server and
a real process agent: a task submitted from the CLI logs a metric that depends on a
parameter it reads through ``safeboard.init(config=...)``; from its run page "Run again"
with that parameter changed queues a new task (same code snapshot), the agent runs it and
the new run's chart holds the changed value. The Agents page lists the agent with its
GPUs, mints a join string (shown once, copied) and revokes the agent; a member gets 404.
Every page runs under the strict CSP, with no console error (browser.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

import safeboard
from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import (
    SETTINGS,
    Agent,
    agent_env,
    agents,
    api,
    state_of,
    wait_for,
)
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link

__all__ = ["agents"]  # the agent-process fixture, shared with test_agent_run

pytestmark = pytest.mark.e2e

# The task's environment is built from nothing (docs/agents.md): it imports the safeboard
# being tested, wherever this checkout is, as an installed one would be found.
SDK_UNDER_TEST = Path(safeboard.__file__).resolve().parents[1]
PASSWORD = "a-long-and-unusual-passphrase-42"
TRAIN = (
    "import safeboard\n"
    "run = safeboard.init(config={'scale': 2, 'optimizer': {'name': 'sgd'}})\n"
    "for step in range(5):\n"
    "    run.log({'value': run.config['scale'] * step}, step=step)\n"
    "run.finish()\n"
    "print('scale', run.config['scale'], flush=True)\n"
)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server per test: each signs in with its one-time startup link."""
    started = start_server(tmp_path_factory.mktemp("agents-ui"), settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


def last_value(server: ServerProcess, run_id: str) -> float | None:
    with api(server) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
    found = [m["last_value"] for m in run["metrics"] if m["key"] == "value"]
    return found[0] if found else None


def test_run_again_with_a_changed_parameter(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    code = tmp_path / "project"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    task_id = submit_in(server, code, "--label", "again", "--", "python", "train.py")
    runner = agents("runner", "--labels", "again")
    first = state_of(server, task_id, "succeeded", "failed", timeout=60)
    log = runner.state_dir / "logs" / f"task-{task_id}.1.log"
    assert first["state"] == "succeeded", log.read_text()
    assert last_value(server, first["run_id"]) == 8  # 2 * 4
    _, link = startup_link(server)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{first['run_id']}")
        page.get_by_test_id("run-again").click()
        page.wait_for_url(f"**/runs/{first['run_id']}/run-again", timeout=TIMEOUT_MS)
        expect(page.locator("textarea[name=command]")).to_have_value("python\ntrain.py")
        scale = page.get_by_label("scale", exact=True)
        expect(scale).to_have_value("2")
        scale.fill("many")  # refused in the page, nothing sent
        page.get_by_role("button", name="Queue the new task").click()
        expect(page.locator("#status")).to_have_text("scale: a number")
        scale.fill("5")
        page.get_by_role("button", name="Queue the new task").click()
        page.wait_for_url(lambda url: "/run-again" not in url and "/runs/" in url,
                          timeout=TIMEOUT_MS)  # fmt: skip
        new_run = page.url.rsplit("/", 1)[1]
        assert new_run != first["run_id"]
        expect(page.locator("#run-status")).to_have_text("finished", timeout=60_000)
        chart = page.locator('figure.chart[data-key="value"]')  # drawn live as it ran
        expect(chart.locator("canvas")).to_have_count(1, timeout=TIMEOUT_MS)
        page.reload()  # and as the page draws a finished run
        expect(chart.locator("canvas")).to_have_count(1, timeout=TIMEOUT_MS)
        page.get_by_text("Summary table").click()
        row = page.locator("#metrics details tr", has_text="value")
        expect(row.locator("td").nth(2)).to_have_text("20")  # last: 5 * 4
        params = page.get_by_test_id("params")
        expect(params.locator("tr", has_text="scale")).to_contain_text("5")
        watch.assert_clean()

    assert last_value(server, new_run) == 20
    with api(server) as client:
        tasks = client.get("/api/v1/tasks", params={"project": "ml"}).json()["tasks"]
    again = next(t for t in tasks if t["run_id"] == new_run)
    assert again["params"] == {"scale": 5}
    assert again["code_sha256"] == first["code_sha256"]  # the same snapshot
    assert again["state"] == "succeeded"


def test_agents_page_lists_joins_and_revokes(
    server: ServerProcess, agents: Callable[..., Agent]
) -> None:
    agent = agents("listed")
    added = run_cli("user", "add", "alice", "--invite", data_dir=server.data_dir)
    assert added.returncode == 0, added.stderr
    invite_link = next(w for w in added.stdout.split() if "/invite#token=" in w)
    _, link = startup_link(server)
    agent_id = agent.saved["agent_id"]

    with chromium() as browser:
        page, watch = browser.new_page(permissions=["clipboard-read", "clipboard-write"])
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.get_by_role("link", name="Agents").click()
        page.wait_for_url(f"{server.url}/admin/agents", timeout=TIMEOUT_MS)
        row = page.locator(f'tr[data-agent="{agent_id}"]')
        expect(row).to_contain_text("NVIDIA H100, 80 GiB")
        expect(row.get_by_test_id("gpu")).to_have_count(2)
        expect(row).to_contain_text("none")  # no current task

        page.get_by_label("Pool").fill("gpu")
        page.get_by_label("Labels (comma-separated)").fill("a100, fast")
        page.get_by_role("button", name="Create a join string").click()
        shown = page.get_by_test_id("join-string")
        expect(shown).to_contain_text("sbjoin1.", timeout=TIMEOUT_MS)
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#status")).to_have_text("Copied the join string.")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == shown.text_content()
        joined = run_cli("agent", "join", copied, "--state-dir", str(server.data_dir.parent / "j"),
                         env=cli_env(server.data_dir.parent / "other"))  # fmt: skip
        assert joined.returncode == 0, joined.stderr  # the string works, once

        watch.accept_dialogs = True  # "Revoke agent ...? Its next call is refused ..."
        row.get_by_role("button", name="Revoke").click()
        revoked = page.locator(f'tr[data-agent="{agent_id}"]')
        expect(revoked).to_contain_text("revoked", timeout=TIMEOUT_MS)
        watch.accept_dialogs = False
        assert wait_for(lambda: agent.process.poll() is not None, 30, "the agent's exit")
        assert agent.process.returncode == 2

        member, member_watch = browser.new_page()
        member.goto(invite_link)
        member.get_by_label("New password").fill(PASSWORD)
        member.get_by_label("Repeat it").fill(PASSWORD)
        member.get_by_role("button", name="Set password and sign in").click()
        member.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(member.get_by_role("link", name="Agents")).to_have_count(0)
        answer = member.goto(f"{server.url}/admin/agents")
        assert answer is not None
        assert answer.status == 404
        watch.assert_clean()
        member_watch.assert_clean()


def start_agent(server: ServerProcess, tmp_path: Path, name: str, *args: str) -> Agent:
    """``agent run`` as a process, enrolled with a join string of the server's admin, with
    two fake GPUs (the screenshots': the caller stops it)."""
    made = run_cli("agent", "token", "--pool", "gpu", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    state_dir, env = tmp_path / name, agent_env(tmp_path)
    joined = run_cli("agent", "join", made.stdout.strip(), "--state-dir", str(state_dir), env=env)
    assert joined.returncode == 0, joined.stderr
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir", str(state_dir),
             "--poll", "1s", "--grace", "1s", *args],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    agent = Agent(state_dir, process, out, err)
    wait_for(lambda: "serving" in agent.out or process.poll() is not None, 30, "its hello")
    assert process.poll() is None, agent.err
    return agent


def submit_in(server: ServerProcess, code: Path, *args: str) -> int:
    """``safeboard task submit`` in ``code``, importing the safeboard under test."""
    submitted = subprocess.run(
        [sys.executable, "-m", "safeboard", "task", "submit", "--project", "ml",
         "--env", f"PYTHONPATH={SDK_UNDER_TEST}", *args],
        env=cli_env(server.data_dir), cwd=code, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    return int(submitted.stdout.split()[1])
