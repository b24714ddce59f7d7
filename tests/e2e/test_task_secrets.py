"""Tasks' secrets end to end: a real TLS server, the CLI and ``safeboard agent run`` as
processes, a real task. ``task submit --secret NAME`` (from the environment) and
``--secret NAME=@FILE`` reach the task's environment (it writes their SHA-256), and no
process's argv (``/proc/*/cmdline``, what ``ps`` shows) holds them while it runs; the
server's log, the agent's output and its task log, ``task show``, and the SQLite files
themselves (database and WAL, raw bytes) hold no value, nor its base64 or hex.
``--secret NAME=value`` is refused, saying why."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import SETTINGS, agent_env, api, command_lines, state_of, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "tok-e2e-4f1e9a0c6b2d4e8f9a7b3c1d0e2f4a6b"
PASSWORD = "pw-e2e-Zq8Yk3Lm0Nx7Rb2Vt5Hs9Jd4Gf6Cw1Ep"
TASK = (
    "import hashlib, json, os, sys, time\n"
    "out, release = sys.argv[1], sys.argv[2]\n"
    "seen = {n: hashlib.sha256(os.environ[n].encode()).hexdigest()\n"
    "        for n in ('API_TOKEN', 'DB_PASSWORD')}\n"
    "json.dump(seen, open(out + '.tmp', 'w'))\n"
    "os.rename(out + '.tmp', out)\n"
    "print('hashes written', flush=True)\n"
    "deadline = time.time() + 60\n"
    "while not os.path.exists(release) and time.time() < deadline:\n"
    "    time.sleep(0.1)\n"
)


def encodings(*values: str) -> list[bytes]:
    found = []
    for value in values:
        raw = value.encode()
        found += [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"="),
                  binascii.hexlify(raw)]  # fmt: skip
    return found


def assert_absent(where: str, data: bytes) -> None:
    assert not [n for n in encodings(TOKEN, PASSWORD) if n in data], f"a secret in {where}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-secrets"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


@pytest.fixture
def agent(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    made = run_cli("agent", "token", "--pool", "gpu", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    state_dir, env = tmp_path / "agent", agent_env(tmp_path)
    joined = run_cli("agent", "join", made.stdout.strip(), "--state-dir", str(state_dir), env=env)
    assert joined.returncode == 0, joined.stderr
    out = (tmp_path / "agent.out").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir", str(state_dir),
         "--poll", "1s", "--grace", "1s", "--labels", "secrets"],
        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    yield state_dir, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
    out.close()


def test_secrets_reach_the_task_only(
    server: ServerProcess, agent: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    state_dir, process = agent
    file = tmp_path / "db-password"
    file.write_text(PASSWORD + "\n")
    file.chmod(0o600)
    env = {**cli_env(server.data_dir), "API_TOKEN": TOKEN}
    refused = run_cli("task", "submit", "--project", "ml", "--no-code", "--secret",
                      f"API_TOKEN={TOKEN}", "--", "true", env=env)  # fmt: skip
    assert refused.returncode == 2
    assert "visible to every user of this machine" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr

    out, release = tmp_path / "hashes.json", tmp_path / "release"
    made = run_cli("task", "submit", "--project", "ml", "--no-code", "--label", "secrets",
                   "--secret", "API_TOKEN", "--secret", f"DB_PASSWORD=@{file}", "--json", "--",
                   sys.executable, "-c", TASK, str(out), str(release), env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    task = json.loads(made.stdout)
    assert task["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert_absent("the submit answer", made.stdout.encode())

    wait_for(out.exists, 30, "the task's hashes")
    lines = "\n".join(command_lines())  # while the task runs: every process's argv
    assert "agent run" in lines
    assert_absent("a process's argv (ps)", lines.encode())
    release.touch()
    done = state_of(server, task["id"], "succeeded", "failed", timeout=30)
    assert done["state"] == "succeeded", done
    assert json.loads(out.read_text()) == {
        "API_TOKEN": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "DB_PASSWORD": hashlib.sha256(PASSWORD.encode()).hexdigest(),
    }

    shown = run_cli("task", "show", str(task["id"]), data_dir=server.data_dir)
    assert "secrets: API_TOKEN DB_PASSWORD" in shown.stdout
    as_json = run_cli("task", "show", str(task["id"]), "--json", data_dir=server.data_dir)
    assert json.loads(as_json.stdout)["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert_absent("task show", (shown.stdout + as_json.stdout).encode())
    assert_absent("the server's log", server.log.encode())
    assert_absent("the agent's output", (tmp_path / "agent.out").read_bytes())
    logs = list((state_dir / "logs").glob("task-*.log"))
    assert logs
    assert "hashes written" in logs[0].read_text()
    for log in logs:
        assert_absent(f"the task log {log.name}", log.read_bytes())
    database = [p for p in server.data_dir.rglob("*") if p.is_file() and ".db" in p.name]
    assert database
    for path in database:  # the SQLite database and its WAL, byte for byte
        assert_absent(path.name, path.read_bytes())
    assert process.poll() is None


PRINTS = (
    "import os, sys\n"
    "print('token is', os.environ['API_TOKEN'], flush=True)\n"
    "sys.stdout.write('half ' + os.environ['DB_PASSWORD'][:20]); sys.stdout.flush()\n"
    "print(os.environ['DB_PASSWORD'][20:] + ' end', flush=True)\n"
    "print('task token', os.environ['SAFEBOARD_TASK_TOKEN'], file=sys.stderr, flush=True)\n"
)


def test_a_task_that_prints_its_secrets_ships_them_redacted(
    server: ServerProcess, agent: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """The task's own output: every secret value (one written in two pieces too) and its
    task token leave the agent as ``[redacted]``, in the log file and on the server."""
    state_dir, _ = agent
    env = {**cli_env(server.data_dir), "API_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
    made = run_cli("task", "submit", "--project", "ml", "--no-code", "--label", "secrets",
                   "--secret", "API_TOKEN", "--secret", "DB_PASSWORD", "--json", "--",
                   sys.executable, "-c", PRINTS, env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    task = json.loads(made.stdout)
    done = state_of(server, task["id"], "succeeded", "failed", timeout=60)
    assert done["state"] == "succeeded", done
    shown = run_cli("task", "logs", str(task["id"]), data_dir=server.data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "token is [redacted]" in shown.stdout
    assert "half [redacted] end" in shown.stdout
    assert "task token [redacted]" in shown.stderr
    assert_absent("task logs", (shown.stdout + shown.stderr).encode())
    assert "sb_task_" not in shown.stdout + shown.stderr
    log = state_dir / "logs" / f"task-{task['id']}.1.log"
    assert_absent("the agent's log file", log.read_bytes())
    assert b"sb_task_" not in log.read_bytes()
    for path in [p for p in server.data_dir.rglob("*") if p.is_file() and ".db" in p.name]:
        assert_absent(path.name, path.read_bytes())
