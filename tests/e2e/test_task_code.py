"""A task's code, end to end over TLS: ``safeboard task submit`` in a project directory
packs it (less what .gitignore ignores), uploads it, and a real agent process unpacks it
as the task's working directory, where ``python train.py`` imports a module beside it and
logs a metric with ``safeboard.init()``; the same code submitted again (from the CLI, then
from the SDK's ``safeboard.submit``) is not uploaded again. A malicious archive fails its
task with the reason, the command not run, nothing written outside the task."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, start_server
from tests.e2e.test_agent_run import SETTINGS, Agent, agents, api, state_of

__all__ = ["agents"]  # the agent-process fixture, shared with test_agent_run

pytestmark = pytest.mark.e2e

TRAIN = (
    "import os, sys\n"
    "import safeboard\n"
    "from helpers.values import ACCURACY\n"
    "if os.path.exists('data') or os.path.exists('notes.log'):\n"
    "    sys.exit('ignored files were uploaded')\n"
    "run = safeboard.init()\n"
    "run.log({'acc': ACCURACY}, step=1)\n"
    "run.finish()\n"
    "print('trained', flush=True)\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-code"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


def project_dir(root: Path) -> Path:
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "helpers").mkdir()
    (root / "helpers" / "values.py").write_text("ACCURACY = 0.875\n")
    (root / ".gitignore").write_text("data/\n*.log\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 100_000)
    (root / "notes.log").write_text("not code\n")
    return root


def in_dir(server: ServerProcess, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=cli_env(server.data_dir), cwd=cwd, capture_output=True,
        text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def metric(server: ServerProcess, run_id: str) -> dict[str, int]:
    with api(server) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
    return {m["key"]: m["count"] for m in run["metrics"]}


def test_submit_uploads_the_directory_and_the_agent_runs_it(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    code = project_dir(tmp_path / "project")
    submitted = in_dir(server, code, "-m", "safeboard", "task", "submit", "--project", "ml",
                       "--label", "code", "--", "python", "train.py")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "code: 3 files" in submitted.stderr
    assert "uploaded" in submitted.stderr
    task_id = int(submitted.stdout.split()[1])
    agent = agents("coder", "--labels", "code")
    done = state_of(server, task_id, "succeeded", "failed", timeout=60)
    log = (agent.state_dir / "logs" / f"task-{task_id}.1.log").read_text()
    assert done["state"] == "succeeded", (done, log)
    assert "trained" in log
    assert len(done["code_sha256"] or "") == 64
    assert metric(server, done["run_id"]) == {"acc": 1}

    # The same code again: nothing uploaded, the same archive named.
    again = in_dir(server, code, "-m", "safeboard", "task", "submit", "--project", "ml",
                   "--label", "code", "--json", "--", "python", "train.py")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "already on the server" in again.stderr
    # From the SDK, in the same directory: the same archive, run too.
    sdk = in_dir(server, code, "-c", "import safeboard; t = safeboard.submit('ml', "
                 "'python train.py', labels=['code'], secrets={'HF_TOKEN': 'hf-e2e-7Qw9'}); "
                 "print(t.id, t.code_sha256, *t.secret_names)")  # fmt: skip
    assert sdk.returncode == 0, sdk.stderr
    sdk_task, sdk_code, secret_name = sdk.stdout.split()
    assert sdk_code == done["code_sha256"]
    assert secret_name == "HF_TOKEN"  # the SDK's secrets: the name shown, never the value
    assert "hf-e2e-7Qw9" not in sdk.stdout
    bare = in_dir(server, tmp_path, "-c", "import safeboard; print(safeboard.submit('ml', "
                  "['true'], code=None, labels=['elsewhere']).code_sha256)")  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.strip() == "None"  # code=None: nothing packed, nothing uploaded
    ran = state_of(server, int(sdk_task), "succeeded", "failed", timeout=60)
    assert ran["state"] == "succeeded", ran
    stored = [p for p in (server.data_dir / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 1  # one archive for three tasks
    assert agent.stop() == 0, agent.err


def test_a_malicious_archive_fails_its_task_with_the_reason(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("train.py", "../../../escaped.py"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"#\n"))
    body = gzip.compress(raw.getvalue())
    digest = hashlib.sha256(body).hexdigest()
    with api(server) as client:
        assert client.put(f"/api/v1/projects/ml/code/{digest}", content=body).status_code == 201
        made = client.post("/api/v1/projects/ml/tasks",
                           json={"command": ["python", "-c", "open('/tmp/ran', 'w')"],
                                 "labels": ["evil"], "code_sha256": digest})  # fmt: skip
    assert made.status_code == 201, made.text
    agent = agents("victim", "--labels", "evil")
    failed = state_of(server, made.json()["id"], "failed", "succeeded", timeout=60)
    attempt = failed["attempts"][0]
    assert failed["state"] == "failed"
    assert attempt["exit_code"] == 125
    assert "code refused" in attempt["reason"]
    assert "points out of" in attempt["reason"]
    assert "the command was not run" in attempt["reason"]
    assert not list(agent.state_dir.rglob("escaped.py"))
    assert not list(agent.state_dir.parent.rglob("escaped.py"))
    assert "Traceback" not in agent.out + agent.err
    assert "code refused" in agent.out
    assert agent.stop() == 0, agent.err
