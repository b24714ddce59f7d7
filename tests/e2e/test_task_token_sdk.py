"""Inside a task (S14): a child process with only what an agent gives a task (the URL, the
CA certificate, the run id and the task token: no API key, no login, no discovery file)
runs ``safeboard.init()`` with no arguments against a real TLS server, and its point lands
in the task's run; the token is written nowhere on disk and dies with the attempt."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeboard.jobs.queue import AgentEvent, Lease, TaskQueue
from safeboard.jobs.wakeup import Wakeup
from safeboard.settings import load_settings
from safeboard.storage import create_engine
from tests.e2e.conftest import ServerProcess, cli_env, start_server
from tests.support.agents import add_agents

CHILD = "import safeboard; r = safeboard.init(); r.log({'x': 1}); r.finish()"
AGENT = "agent-fake-e2e"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-token"), "--tls")
    yield started
    started.stop()


def _key(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def _submit_and_lease(server: ServerProcess) -> tuple[dict[str, object], Lease, TaskQueue]:
    """A task submitted over HTTP, leased through the queue on the server's own database
    (the agent's routes are another slice's): the lease issues the token."""
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        client.post("/api/v1/projects", json={"name": "ml"})
        made = client.post("/api/v1/projects/ml/tasks", json={"command": ["python", "t.py"]})
        assert made.status_code == 201, made.text
    settings = load_settings(server.data_dir)
    engine = create_engine(settings.database_url)
    add_agents(engine, AGENT)
    queue = TaskQueue(engine, settings.jobs, Wakeup(engine))
    lease = queue.lease(AGENT, [], [])
    assert lease is not None
    return made.json(), lease, queue


def _child(
    server: ServerProcess, tmp_path: Path, lease: Lease, script: str = CHILD
) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(exist_ok=True)
    env = cli_env(tmp_path / "no-server-here")  # no discovery file, no SAFEBOARD_API_KEY
    env.update(
        SAFEBOARD_URL=server.url,
        SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_RUN_ID=lease.run_id,
        SAFEBOARD_TASK_TOKEN=lease.task_token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "config"),
    )
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip


def test_init_inside_a_task_attaches_to_its_run(server: ServerProcess, tmp_path: Path) -> None:
    task, lease, queue = _submit_and_lease(server)
    done = _child(server, tmp_path, lease)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        run = client.get(f"/api/v1/runs/{task['run_id']}").json()
    assert run["status"] == "finished", run
    assert {m["key"]: m["count"] for m in run["metrics"]} == {"x": 1}
    # The token is nowhere on disk: not in the spool's run.json, not in a config file.
    secret = lease.task_token[len("sb_task_") + 13 :]  # after sb_task_<12 hex>_
    assert len(secret) == 43
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in server.log

    # The attempt ends: the same child, with the same token, is refused (401).
    queue.report(lease.task_id, lease.attempt, AGENT, AgentEvent("exited", exit_code=0))
    again = _child(server, tmp_path / "again", lease)
    assert again.returncode != 0
    assert "invalid task token" in again.stderr
    assert secret not in again.stderr
    queue.engine.dispose()


TWICE = """
import subprocess, sys
import safeboard
run = safeboard.init(config={"a": 1})
run.log({"x": 1.0}, step=0)
run.flush()
again = safeboard.init(config={"b": 2})  # a library or a second integration, say
assert again is run, again
other = subprocess.run([sys.executable, "-c", "import safeboard; safeboard.init()"],
                       capture_output=True, text=True, timeout=60)
print("other:", other.returncode, other.stderr.strip().splitlines()[-1:])
run.log({"x": 2.0}, step=1)
run.finish()
"""


def test_a_second_init_in_a_task_is_its_run_and_another_process_leaves_it_whole(
    server: ServerProcess, tmp_path: Path
) -> None:
    """In the task's process, init() again is the run it holds (its config added); a child
    process that calls init() is refused with the reason and touches nothing of the run.
    Before: the second init() raised SpoolLocked, and its clean-up removed the live run's
    spool directory (its run.json and any batch waiting in it)."""
    task, lease, queue = _submit_and_lease(server)
    done = _child(server, tmp_path, lease, TWICE)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "No such file" not in done.stderr, done.stderr
    said = done.stdout.strip().splitlines()[-1]
    assert said.startswith("other: 1 "), said
    assert "still being written by its script" in said, said
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_key(server)}"
        run = client.get(f"/api/v1/runs/{task['run_id']}").json()
    assert run["status"] == "finished", run
    assert {m["key"]: m["count"] for m in run["metrics"]} == {"x": 2}
    assert (run["config"]["a"], run["config"]["b"]) == (1, 2), run["config"]
    queue.engine.dispose()


LATE_CHILD = (
    "import pathlib, safeboard, time\n"
    "r = safeboard.init()\n"
    "r.log({'x': 1}, step=0)\n"
    "pathlib.Path('started').write_text('x')\n"
    "while not pathlib.Path('go').exists():\n"
    "    time.sleep(0.05)\n"
    "r.log({'x': 2}, step=1)\n"
    "r.finish()\n"
)


def test_a_task_refused_after_its_attempt_ended_is_not_told_to_sync(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A task whose attempt ends under it (a cancel, a loss) is refused from then on: its
    SDK says that its attempt is over, not "once that is fixed, `safeboard sync` sends it":
    nothing fixes a dead token (only a person's own key, on the agent's machine, can)."""
    _, lease, queue = _submit_and_lease(server)
    env = cli_env(tmp_path / "no-server-here")
    env.update(
        SAFEBOARD_URL=server.url, SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_RUN_ID=lease.run_id, SAFEBOARD_TASK_TOKEN=lease.task_token,
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"), SAFEBOARD_CONFIG_DIR=str(tmp_path / "c"),
    )  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", LATE_CHILD], env=env, cwd=tmp_path, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        queue.report(lease.task_id, lease.attempt, AGENT, AgentEvent("exited", exit_code=0))
        (tmp_path / "go").write_text("x")
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        queue.engine.dispose()
    assert "Traceback" not in err
    assert "invalid task token" in err, err
    assert "This task's attempt is over" in err, err
    assert "once that is fixed" not in err, err  # nothing will fix a dead token
    assert "with your own key" in err, err
