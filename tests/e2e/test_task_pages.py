"""The task pages in headless Chromium against a real TLS server, with ``safeboard task
submit`` and ``safeboard agent run`` as real processes (issue 16): a task submitted from
the CLI shows in the project's Tasks tab; on its page the log grows as the task prints
(and waits while paused; search narrows it); the code downloads; the page's Cancel stops
it (cancelled) and Retry queues it again as a new task, which runs; the run page links
back to its task; a secret's value reaches neither the page nor the JSON it fetches; a
user without access gets 404; a lost attempt's retry is followed in the same log, and
each attempt's log can be shown alone. No CSP violation, no console error."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response, expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import Agent, agents, api, state_of, wait_for
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link, submit_login

pytestmark = pytest.mark.e2e
__all__ = ["agents"]  # the fixture, shared with test_agent_run

SETTINGS = {
    "SAFEBOARD__JOBS__LEASE_SECONDS": "30",
    "SAFEBOARD__JOBS__REAPER_SECONDS": "0.5",
    "SAFEBOARD__JOBS__POLL_SECONDS": "1",
}
SECRET = "s3cr3t-value-for-the-page-test-91b2"
PASSWORD = "a-long-and-unusual-passphrase-42"
# Prints five lines, waits for the file "go" beside it (the test makes it), then prints
# a line every 0.3 s until stopped.
TRAIN = """\
import os, pathlib, sys, time
for i in range(1, 6):
    print(f"step {i}", flush=True)
print("waiting for go", file=sys.stderr, flush=True)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.1)
i = 6
while True:
    print(f"step {i} after go", flush=True)
    i += 1
    time.sleep(0.3)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-pages"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


def submit_from_cli(server: ServerProcess, code: Path, go: Path) -> int:
    env = cli_env(server.data_dir)
    env["WANDB_API_KEY"] = SECRET
    made = subprocess.run(
        [sys.executable, "-m", "safeboard", "task", "submit", "--project", "ml", "--label",
         "pages", "--code", str(code), "--env", "LR=0.1", "--secret", "WANDB_API_KEY",
         "--name", "page-run", "--json", "--", sys.executable, "train.py", str(go)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return int(json.loads(made.stdout)["id"])


def log_lines(page: Page) -> list[str]:
    """The stdout lines shown (stderr's may come between them anywhere)."""
    found: list[str] = page.locator("#log li.log-stdout").all_inner_texts()
    return found


def add_stranger(server: ServerProcess) -> None:
    assert run_cli("user", "add", "mallory", data_dir=server.data_dir).returncode == 0
    set_password = subprocess.run(
        [sys.executable, "-m", "safeboard", "user", "set-password", "mallory",
         "--password-stdin"],
        env=cli_env(server.data_dir), input=PASSWORD + "\n", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert set_password.returncode == 0, set_password.stderr


def test_watch_cancel_and_retry_a_task_from_its_page(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    code = tmp_path / "project"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    go = tmp_path / "go"
    task_id = submit_from_cli(server, code, go)
    _, link = startup_link(server)
    fetched: list[str] = []  # every JSON body the pages fetched

    def keep(response: Response) -> None:
        if "/api/v1/tasks" in response.url and "/code" not in response.url:
            try:
                fetched.append(response.text())
            except Exception:  # noqa: BLE001  (a body the page abandoned: a long-poll cut)
                return

    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, watch = browser.new_page(accept_downloads=True)
        page.set_viewport_size({"width": 1366, "height": 768})
        page.on("response", keep)
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        # The Tasks tab: the task waits for an agent.
        page.goto(f"{server.url}/projects/ml")
        page.get_by_role("link", name="Tasks").click()
        row = page.locator(f'tr[data-task="{task_id}"]')
        expect(row.locator(".status")).to_have_text("queued", timeout=TIMEOUT_MS)
        row.get_by_role("link", name=f"#{task_id}").click()
        expect(page.get_by_role("heading", name=f"Task {task_id}")).to_be_visible()
        expect(page.locator("#log-status")).to_contain_text("Waiting for an agent")
        html = page.content()
        assert "WANDB_API_KEY" in html
        assert SECRET not in html

        # A second tab on the Tasks tab hears of the change (the project's event stream).
        tab = page.context.new_page()
        tab.goto(f"{server.url}/projects/ml/tasks")
        expect(tab.locator("body")).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)

        # An agent takes it: the first lines stream in while the task waits for "go".
        agents("pages", "--labels", "pages")
        expect(page.locator("#log li", has_text="step 5")).to_have_count(1, timeout=30_000)
        expect(tab.locator("#live")).to_contain_text("1 task changed", timeout=TIMEOUT_MS)
        tab.close()
        expect(page.get_by_test_id("task-state")).to_have_text("running", timeout=TIMEOUT_MS)
        assert log_lines(page)[:5] == [f"step {i}" for i in range(1, 6)]
        assert "after go" not in " ".join(log_lines(page))
        go.touch()  # now it prints on, and the page shows it as it comes
        later = page.locator("#log li", has_text="step 7 after go")
        expect(later).to_have_count(1, timeout=30_000)

        # Pause: no new line is shown; Follow: they come again.
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("button", name="Follow")).to_be_visible()
        held = len(log_lines(page))
        page.wait_for_timeout(2000)
        assert len(log_lines(page)) == held
        page.get_by_role("button", name="Follow").click()
        expect(page.locator("#log li.log-stdout")).not_to_have_count(held, timeout=TIMEOUT_MS)
        # Search narrows the lines shown to those that hold the text.
        page.get_by_label("Search").fill("WAITING for")  # the one stderr line, any case
        expect(page.locator("#log li:visible")).to_have_count(1)
        expect(page.locator("#log-status")).to_contain_text('hold "WAITING for"')
        page.get_by_label("Search").fill("")
        assert page.locator("#log li:visible").count() > 5

        # The code: the archive the task ran, as a file.
        with page.expect_download(timeout=TIMEOUT_MS) as download:
            page.get_by_role("link", name="Download the code").click()
        saved = download.value.path()
        task = state_of(server, task_id, "running")
        assert (
            download.value.suggested_filename == f"task-{task_id}-{task['code_sha256'][:12]}.tar.gz"
        )
        assert hashlib.sha256(Path(saved).read_bytes()).hexdigest() == task["code_sha256"]

        # Cancel from the page: the agent stops the process; the state turns cancelled.
        page.get_by_role("button", name="Cancel task").click()
        expect(page.get_by_test_id("task-state")).to_have_text("cancelled", timeout=30_000)
        expect(page.locator('#attempts tr[data-attempt="1"] .status')).to_have_text("cancelled")
        expect(page.get_by_role("button", name="Retry as a new task")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel task")).to_be_hidden()

        # The run page links back to its task.
        page.get_by_test_id("task-run").click()
        expect(page.get_by_test_id("run-name")).to_have_text("page-run")
        page.get_by_test_id("run-task").get_by_role("link").click()
        expect(page.get_by_role("heading", name=f"Task {task_id}")).to_be_visible()

        # Retry: a new task with the same code runs (go exists: it prints on at once).
        page.get_by_role("button", name="Retry as a new task").click()
        page.wait_for_url(
            lambda url: (
                re.search(r"/tasks/\d+$", url) is not None and not url.endswith(f"/tasks/{task_id}")
            ),
            timeout=TIMEOUT_MS,
        )
        retried = int(page.url.rsplit("/", 1)[1])
        assert retried > task_id
        expect(page.get_by_text(f"task {task_id}", exact=True)).to_be_visible()  # "Retry of"
        expect(page.locator("#log li", has_text="after go").first).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Cancel task").click()
        expect(page.get_by_test_id("task-state")).to_have_text("cancelled", timeout=30_000)

        # The Tasks tab's filter: both cancelled.
        page.goto(f"{server.url}/projects/ml/tasks")
        page.get_by_role("link", name="cancelled").click()
        expect(page.locator("#tasks tbody tr")).to_have_count(2)

        # No console error on the signed-in user's pages (nor a CSP violation: chromium()).
        assert not [line for line in watch.console if line.startswith("error")], watch.console

        # A user without access to the project: 404 for the task and the tab.
        add_stranger(server)
        other, _ = browser.new_page()
        other.goto(f"{server.url}/login")
        assert submit_login(other, "mallory", PASSWORD) == 200
        other.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        for path in (f"/tasks/{task_id}", "/projects/ml/tasks"):
            answer = other.goto(f"{server.url}{path}")
            assert answer is not None, path
            assert answer.status == 404, path

    assert fetched, "the pages fetched no task JSON"
    for body in fetched:
        assert SECRET not in body
    assert not [p for p in tmp_path.glob("*.err") if "Traceback" in p.read_text()]


LOST_SETTINGS = {**SETTINGS, "SAFEBOARD__JOBS__LEASE_SECONDS": "5"}
# Three lines per attempt; the first attempt then waits to be lost (its agent killed).
ATTEMPTS = (
    "import os, sys, time\n"
    "attempt = os.environ['SAFEBOARD_ATTEMPT']\n"
    "for i in range(1, 4):\n"
    "    print(f'attempt {attempt} line {i}', flush=True)\n"
    "if attempt == '1':\n"
    "    open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "    time.sleep(60)\n"
)


def test_the_log_moves_on_to_a_new_attempt_and_shows_either(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    short = start_server(tmp_path, "--tls", name="short", settings=LOST_SETTINGS)
    child = None
    try:
        with api(short) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
            made = client.post("/api/v1/projects/ml/tasks", json={
                "command": [sys.executable, "-c", ATTEMPTS, str(tmp_path / "pid")],
                "labels": ["lost"]})  # fmt: skip
        assert made.status_code == 201, made.text
        task_id = made.json()["id"]
        first = agents("k1", "--labels", "lost", on=short)
        _, link = startup_link(short)
        with chromium(
            f"--ignore-certificate-errors-spki-list={spki_sha256(short.port)}"
        ) as browser:
            page, watch = browser.new_page()
            page.goto(link)
            page.wait_for_url(f"{short.url}/", timeout=TIMEOUT_MS)
            page.goto(f"{short.url}/tasks/{task_id}")
            expect(page.locator("#log li", has_text="attempt 1 line 3")).to_have_count(
                1, timeout=30_000
            )
            child = int(wait_for(lambda: (tmp_path / "pid").exists()
                                 and (tmp_path / "pid").read_text(), 20, "attempt 1"))  # fmt: skip
            first.process.kill()  # its attempt is lost when the lease lapses; a retry follows
            first.process.wait()
            agents("k2", "--labels", "lost", on=short)
            expect(page.get_by_test_id("task-state")).to_have_text("succeeded", timeout=60_000)
            expect(page.locator("#log li.log-mark")).to_have_text("attempt 2")
            expect(page.locator("#log li.log-stdout")).to_have_text(
                [f"attempt {a} line {i}" for a in (1, 2) for i in (1, 2, 3)]
            )
            states = page.locator("#attempts tr[data-attempt] .status")
            expect(states).to_have_text(["lost", "succeeded"])
            # Reloaded, the page offers each attempt's log on its own.
            page.reload()
            expect(page.locator("#log li.log-stdout")).to_have_count(3, timeout=TIMEOUT_MS)
            page.get_by_label("Attempt").select_option("1")
            expect(page.locator("#log li.log-stdout")).to_have_text(
                [f"attempt 1 line {i}" for i in (1, 2, 3)], timeout=TIMEOUT_MS
            )
            assert not [line for line in watch.console if line.startswith("error")], watch.console
    finally:
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        short.stop()
