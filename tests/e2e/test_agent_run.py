"""``safeboard agent run`` as a real process against a real TLS server: tasks are real
commands; what they receive (and do not), their exit codes, cancel (SIGTERM to the group,
SIGKILL after the grace), an agent killed with -9 (its attempt lost, retried on another
agent, its late calls refused), a revoked agent, drain. Short leases through settings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import safeboard
from safeboard.agent.isolation import AS_ROOT_WARNING
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server

pytestmark = pytest.mark.e2e

LEASE = 5  # seconds: heartbeats every 5/3 s
SETTINGS = {
    "SAFEBOARD__JOBS__LEASE_SECONDS": str(LEASE),
    "SAFEBOARD__JOBS__REAPER_SECONDS": "0.5",
    "SAFEBOARD__JOBS__POLL_SECONDS": "1",
}
FAKE_GPUS = [
    {"index": 0, "uuid": "GPU-11111111-2222", "model": "NVIDIA H100", "memory_mib": 81559},
    {"index": 1, "uuid": "GPU-33333333-4444", "model": "NVIDIA H100", "memory_mib": 81559},
]
USER_KEY_IN_AGENT_ENV = "sb_0123456789ab_" + "K" * 43  # must never reach a task


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("agent-run"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


def api(server: ServerProcess, credential: str | None = None) -> httpx.Client:
    if credential is None:
        credential = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    client = server.client()
    client.headers["Authorization"] = f"Bearer {credential}"
    return client


def submit(server: ServerProcess, label: str, *command: str, **spec: Any) -> int:
    body = {"command": list(command), "labels": [label], **spec}
    with api(server) as client:
        made = client.post("/api/v1/projects/ml/tasks", json=body)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def task(server: ServerProcess, task_id: int) -> dict[str, Any]:
    with api(server) as client:
        found: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
    return found


def wait_for(what: Callable[[], Any], timeout: float = 20, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {message}")


def state_of(
    server: ServerProcess, task_id: int, *states: str, timeout: float = 20
) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(lambda: (t := task(server, task_id))["state"] in states and t,
                                     timeout, f"task {task_id} in {states}")  # fmt: skip
    return found


@dataclass
class Agent:
    state_dir: Path
    process: subprocess.Popen[str]
    out_path: Path
    err_path: Path

    @property
    def saved(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads((self.state_dir / "agent.json").read_text())
        return found

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def agent_env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path / "gpu-machine-data")
    del env["SAFEBOARD_DATA_DIR"]
    env["HOME"] = str(tmp_path / "gpu-home")
    env["SAFEBOARD_AGENT_FAKE_GPUS"] = json.dumps(FAKE_GPUS)
    env["SAFEBOARD_API_KEY"] = USER_KEY_IN_AGENT_ENV
    return env


def launch_agent(
    tmp_path: Path,
    server: ServerProcess,
    name: str,
    args: tuple[str, ...],
    env: dict[str, str],
    started: list[Agent],
) -> Agent:
    """Join ``server`` with a fresh join string, then ``agent run`` (``--poll 1s --grace 1s``
    and ``args``) under ``env``; returns once it says it is serving."""
    made = run_cli("agent", "token", "--pool", "gpu", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    state_dir = tmp_path / name
    joined = run_cli("agent", "join", made.stdout.strip(), "--state-dir", str(state_dir),
                     env=env)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir",
             str(state_dir), "--poll", "1s", "--grace", "1s", *args],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    agent = Agent(state_dir, process, out, err)
    started.append(agent)
    wait_for(lambda: "serving" in agent.out or agent.process.poll() is not None, 30,
             "the agent's hello")  # fmt: skip
    assert agent.process.poll() is None, agent.err
    return agent


def kill_agents(started: list[Agent]) -> None:
    """Stop the agents a test left running as a user would (SIGTERM: drain; again: stop
    the tasks now, SIGTERM to their groups, SIGKILL after the 1 s grace), so that no task
    process outlives its test; SIGKILL only for an agent that does not stop in 10 s."""
    running = [agent for agent in started if agent.process.poll() is None]
    for agent in running:
        agent.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    for agent in running:
        if agent.process.poll() is None:
            agent.process.send_signal(signal.SIGTERM)
    for agent in running:
        try:
            agent.process.wait(10)
        except subprocess.TimeoutExpired:
            agent.process.kill()
            agent.process.wait()


@pytest.fixture
def agents(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def start(name: str, *args: str, on: ServerProcess = server) -> Agent:
        return launch_agent(tmp_path, on, name, args, agent_env(tmp_path), started)

    yield start
    kill_agents(started)


def command_lines() -> list[str]:
    """Every process's argv, as ``ps`` shows them to anyone on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # ended meanwhile
    return found


PRINT_ENV = (
    "import json, os, sys, time\n"
    "ca = open(os.environ['SAFEBOARD_CA_CERT']).read()\n"
    "mode = oct(os.stat(os.environ['SAFEBOARD_CA_CERT']).st_mode & 0o777)\n"
    "json.dump({'env': dict(os.environ), 'ca': ca, 'ca_mode': mode, 'cwd': os.getcwd(),\n"
    "           'cwd_mode': oct(os.stat('.').st_mode & 0o777)}, open(sys.argv[1], 'w'))\n"
    "print('hello from the task', flush=True)\n"
    "time.sleep(2)\n"
)


def test_tasks_run_with_their_environment_and_exit_codes(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = agents("a", "--labels", "env")
    dump = tmp_path / "env.json"
    ok = submit(server, "env", sys.executable, "-c", PRINT_ENV, str(dump), gpus=1,
                env={"LR": "0.1"})  # fmt: skip
    wait_for(dump.exists, 20, "the task's environment")
    seen = command_lines()
    credential = agent.saved["credential"]
    assert any("agent run" in line for line in seen)
    assert not [line for line in seen if "sb_agent_" in line or credential in line]
    done = state_of(server, ok, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert done["attempts"][0]["exit_code"] == 0

    got = json.loads(dump.read_text())
    env = got["env"]
    assert env["LR"] == "0.1"
    assert env["SAFEBOARD_URL"] == server.url
    assert env["SAFEBOARD_RUN_ID"] == done["run_id"]
    assert (env["SAFEBOARD_TASK_ID"], env["SAFEBOARD_ATTEMPT"]) == (str(ok), "1")
    assert env["CUDA_VISIBLE_DEVICES"] == done["attempts"][0]["gpu_uuids"][0]
    assert env["CUDA_VISIBLE_DEVICES"] in {gpu["uuid"] for gpu in FAKE_GPUS}
    assert env["NVIDIA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"]
    assert env["SAFEBOARD_TASK_TOKEN"].startswith("sb_task_")  # this attempt's own (S14)
    assert env["SAFEBOARD_TASK_TOKEN"] not in "\n".join(seen)  # never in an argv
    assert "SAFEBOARD_API_KEY" not in env
    expected = {"PATH", "HOME", "LANG", "LR", "SAFEBOARD_URL", "SAFEBOARD_RUN_ID",
                "SAFEBOARD_TASK_ID", "SAFEBOARD_ATTEMPT", "SAFEBOARD_CA_CERT",
                "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                "SAFEBOARD_TASK_TOKEN"}  # fmt: skip
    assert set(env) - expected <= {"PWD", "LC_CTYPE"}  # what Python itself may add
    assert credential not in json.dumps(got)
    assert USER_KEY_IN_AGENT_ENV not in json.dumps(got)
    assert got["ca"].strip() == server.ca_path.read_text().strip()
    assert (got["ca_mode"], got["cwd_mode"]) == ("0o600", "0o700")
    assert Path(got["cwd"]).parent == agent.state_dir / "tasks"
    assert not Path(got["cwd"]).exists()  # removed after the task
    log = agent.state_dir / "logs" / f"task-{ok}.1.log"
    assert "hello from the task" in log.read_text()

    failing = submit(server, "env", sys.executable, "-c", "raise SystemExit(3)")
    failed = state_of(server, failing, "succeeded", "failed")
    assert failed["state"] == "failed"
    assert failed["attempts"][0]["exit_code"] == 3
    shown = run_cli("task", "show", str(ok), data_dir=server.data_dir)
    assert "succeeded" in shown.stdout, shown.stdout
    missing = submit(server, "env", "no-such-program-here")
    assert state_of(server, missing, "failed")["attempts"][0]["exit_code"] == 127

    assert agent.stop() == 0, agent.err
    assert f"task {ok} attempt 1: started" in agent.out
    assert f"task {failing} attempt 1: exit code 3" in agent.out
    assert "agent stopped" in agent.out
    assert "Traceback" not in agent.err


TRAP_TERM = (
    "import pathlib, signal, sys, time\n"
    "mark = pathlib.Path(sys.argv[1])\n"
    "def stop(*_):\n"
    "    mark.write_text('SIGTERM')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "mark.write_text('running')\n"
    "time.sleep(60)\n"
)
IGNORE_TERM = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(sys.argv[1]).write_text('running')\n"
    "time.sleep(60)\n"
)


TRAIN = (
    "import safeboard\n"
    "run = safeboard.init()\n"  # no configuration: the task's environment says it all
    "for step in range(50):\n"
    "    run.log({'loss': 1.0 / (step + 1)}, step=step)\n"
    "run.finish()\n"
)


def test_a_task_logs_to_its_own_run_with_its_token(
    server: ServerProcess, agents: Callable[..., Agent]
) -> None:
    """The user story end to end: submit, an agent runs the script, the script's SDK logs
    into the task's run with the attempt's token (and no other credential), and the token
    dies with the attempt."""
    agent = agents("t", "--labels", "train")
    # The task's environment is built from nothing: it imports the safeboard under test
    # only if told where it is (as a user's env would say where their code lives).
    here = str(Path(safeboard.__file__).resolve().parents[1])
    ran = submit(server, "train", sys.executable, "-c", TRAIN, env={"PYTHONPATH": here})
    done = state_of(server, ran, "succeeded", "failed")
    log = agent.state_dir / "logs" / f"task-{ran}.1.log"
    assert done["state"] == "succeeded", log.read_text()[-3000:]
    with api(server) as client:
        run = client.get(f"/api/v1/runs/{done['run_id']}").json()
        points = client.get(f"/api/v1/runs/{done['run_id']}/points", params={"metric": "loss"})
    assert run["status"] == "finished", run
    assert points.json()["steps"] == list(range(50))


def test_cancel_stops_the_process_group(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = agents("c", "--labels", "cancel")
    mark = tmp_path / "mark"
    polite = submit(server, "cancel", sys.executable, "-c", TRAP_TERM, str(mark))
    wait_for(lambda: mark.exists() and state_of(server, polite, "running"), 20, "running")
    asked = time.monotonic()
    cancelled = run_cli("task", "cancel", str(polite), data_dir=server.data_dir)
    assert cancelled.returncode == 0, cancelled.stderr
    state_of(server, polite, "cancelled")
    assert time.monotonic() - asked < LEASE / 3 + 1 + 12  # heartbeat, grace, a busy machine
    assert mark.read_text() == "SIGTERM"

    mark.unlink()
    stubborn = submit(server, "cancel", sys.executable, "-c", IGNORE_TERM, str(mark))
    wait_for(lambda: mark.exists() and state_of(server, stubborn, "running"), 20, "running")
    assert run_cli("task", "cancel", str(stubborn), data_dir=server.data_dir).returncode == 0
    ended = state_of(server, stubborn, "cancelled")
    assert ended["attempts"][0]["signal"] == signal.SIGKILL
    assert "SIGKILL" in agent.out
    assert agent.stop() == 0


def test_an_agent_killed_mid_task_loses_its_attempt(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    first = agents("k1", "--labels", "lost")
    pid_file = tmp_path / "pid"
    script = ("import os, sys, time\n"
              "if os.environ['SAFEBOARD_ATTEMPT'] == '1':\n"
              "    open(sys.argv[1], 'w').write(str(os.getpid()))\n"
              "    time.sleep(60)\n")  # fmt: skip
    task_id = submit(server, "lost", sys.executable, "-c", script, str(pid_file))
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 20, "attempt 1"))
    try:
        first.process.kill()
        first.process.wait()
        requeued = state_of(server, task_id, "queued", timeout=LEASE + 10)
        assert requeued["attempts"][0]["state"] == "lost"
        second = agents("k2", "--labels", "lost")
        done = state_of(server, task_id, "succeeded", "failed")
        assert done["state"] == "succeeded"
        assert [(a["attempt"], a["state"]) for a in done["attempts"]] == [
            (1, "lost"), (2, "succeeded")
        ]  # fmt: skip
        assert done["attempts"][1]["agent_id"] == second.saved["agent_id"]
        # The first agent's late heartbeat and report, with its own credential: 409.
        with api(server, first.saved["credential"]) as late:
            beat = late.post(f"/api/v1/agent/tasks/{task_id}/1/heartbeat")
            assert beat.status_code == 409, beat.text
            report = late.post(f"/api/v1/agent/tasks/{task_id}/1/events",
                               json={"kind": "exited", "exit_code": 0})  # fmt: skip
            assert report.status_code == 409, report.text
        assert second.stop() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)


def test_a_revoked_agent_stops_with_one_line(
    server: ServerProcess, agents: Callable[..., Agent]
) -> None:
    agent = agents("r", "--labels", "revoke")
    revoked = run_cli("agent", "revoke", agent.saved["agent_id"], data_dir=server.data_dir)
    assert revoked.returncode == 0, revoked.stderr
    assert agent.process.wait(timeout=20) == 2
    lines = [line for line in agent.err.splitlines()
             if line.strip() and not line.startswith(AS_ROOT_WARNING)]  # fmt: skip
    assert len(lines) == 1, agent.err
    assert "revoked" in lines[0]


def test_drain_lets_a_task_finish_then_a_second_signal_stops_it(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = agents("d", "--labels", "drain", "--drain-timeout", "30s")
    mark = tmp_path / "mark"
    short = submit(server, "drain", sys.executable, "-c",
                   "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('x'); "
                   "time.sleep(1.5)", str(mark))  # fmt: skip
    wait_for(mark.exists, 20, "running")
    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(timeout=20) == 0, agent.err
    assert state_of(server, short, "succeeded")["state"] == "succeeded"
    assert "draining" in agent.out

    again = agents("d2", "--labels", "drain", "--drain-timeout", "30s")
    mark.unlink()
    long = submit(server, "drain", sys.executable, "-c", TRAP_TERM, str(mark))
    wait_for(lambda: mark.exists() and state_of(server, long, "running"), 20, "running")
    again.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    again.process.send_signal(signal.SIGINT)
    assert again.process.wait(timeout=20) == 0, again.err
    assert state_of(server, long, "failed", "succeeded", "cancelled")["state"] in {
        "succeeded", "failed"
    }  # fmt: skip
    assert mark.read_text() == "SIGTERM"


READ_AGENT_JSON = (
    "import json, pathlib\n"
    "saved = json.loads((pathlib.Path.cwd().parent.parent / 'agent.json').read_text())\n"
    "print('the agent credential:', saved['credential'])\n"
)


def test_the_agent_credential_stays_out_of_a_task_s_output(
    server: ServerProcess, agents: Callable[..., Agent]
) -> None:
    """A task runs as the agent's OS user, so it can read ``agent.json`` (docs/agents.md,
    "The security model"): what it prints of the agent's credential is redacted, like its
    secrets, so the project's readers do not get it from the task's log."""
    agent = agents("leak", "--labels", "leak")
    credential = agent.saved["credential"]
    task_id = submit(server, "leak", sys.executable, "-c", READ_AGENT_JSON)
    assert state_of(server, task_id, "succeeded", "failed")["state"] == "succeeded"
    with api(server) as client:
        shipped = wait_for(lambda: (page := client.get(f"/api/v1/tasks/{task_id}/logs").json())
                           ["lines"] and page, 20, "the task's output")  # fmt: skip
    assert [line["text"] for line in shipped["lines"]] == ["the agent credential: [redacted]"]
    kept = (agent.state_dir / "logs" / f"task-{task_id}.1.log").read_text()
    assert "[redacted]" in kept
    assert credential not in kept
    assert credential not in agent.out + agent.err


def test_a_task_the_drain_stopped_says_so(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    """Past the drain timeout the agent stops its task: the task's reason names the agent's
    stop, not only "killed by signal 15", which reads as the task's own fault."""
    agent = agents("dr", "--labels", "drained", "--drain-timeout", "1s", "--grace", "5s")
    mark = tmp_path / "mark"
    task_id = submit(server, "drained", sys.executable, "-c",
                     "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('x'); "
                     "time.sleep(60)", str(mark))  # fmt: skip
    wait_for(lambda: mark.exists() and state_of(server, task_id, "running"), 20, "running")
    agent.process.send_signal(signal.SIGINT)
    assert agent.process.wait(timeout=30) == 0, agent.err
    ended = state_of(server, task_id, "failed", "succeeded", "cancelled")
    assert ended["state"] == "failed"
    assert ended["reason"].startswith("stopped by its agent, which was shutting down"), ended
    assert ended["reason"].endswith("killed by signal 15"), ended
    assert ended["attempts"][0]["reason"] == ended["reason"]


def test_a_server_restart_leaves_the_task_running(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    """The server goes away while a task runs and its exit is reported: the task goes on,
    the report is retried with backoff, and lands once the server is back (same port)."""
    settings = {**SETTINGS, "SAFEBOARD__JOBS__LEASE_SECONDS": "30"}  # outlives the restart
    own = start_server(tmp_path, "--tls", name="restarting", settings=settings)
    try:
        with api(own) as client:
            assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
        agent = agents("s", "--labels", "restart", on=own)
        mark = tmp_path / "mark"
        task_id = submit(own, "restart", sys.executable, "-c",
                         "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('x');"
                         " time.sleep(2); print('done', flush=True)", str(mark))  # fmt: skip
        wait_for(lambda: mark.exists() and state_of(own, task_id, "running"), 20, "running")
        own.stop()
        # Its last output is shipped before the exit is reported (docs/agents.md, "Logs"):
        # the agent retries that first, then the report.
        wait_for(lambda: "cannot ship its output" in agent.out, 20, "a failed shipment")
        assert agent.process.poll() is None  # the agent waits for the server
        own = start_server(tmp_path, "--tls", name="restarting", port=own.port,
                           settings=settings)  # fmt: skip
        done = state_of(own, task_id, "succeeded", "failed", timeout=30)
        assert done["state"] == "succeeded", done
        assert done["attempts"][0]["exit_code"] == 0
        assert "done" in (agent.state_dir / "logs" / f"task-{task_id}.1.log").read_text()
        assert agent.stop() == 0, agent.err
        assert "Traceback" not in agent.err
    finally:
        own.stop()


def test_an_attempt_taken_away_is_killed_at_once(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    """A network split, played by stopping the agent (SIGSTOP) past its lease: the reaper
    marks the attempt lost and requeues the task; when the agent comes back its heartbeat
    gets 409, and it kills attempt 1's process group at once and says so."""
    agent = agents("split", "--labels", "split")
    pid_file = tmp_path / "pid"
    script = (
        "import os, sys, time\n"
        "if os.environ['SAFEBOARD_ATTEMPT'] == '1':\n"
        "    open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
    )
    task_id = submit(server, "split", sys.executable, "-c", script, str(pid_file))
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 20, "attempt 1"))
    agent.process.send_signal(signal.SIGSTOP)
    try:
        lost = state_of(server, task_id, "queued", timeout=LEASE + 10)
        assert lost["attempts"][0]["state"] == "lost"
    finally:
        agent.process.send_signal(signal.SIGCONT)
    wait_for(lambda: not Path(f"/proc/{child}").exists(), 15, "attempt 1 killed")
    assert f"task {task_id} attempt 1: taken away by the server" in agent.out
    done = state_of(server, task_id, "succeeded", "failed")
    assert [(a["attempt"], a["state"]) for a in done["attempts"]] == [
        (1, "lost"),
        (2, "succeeded"),
    ]
    assert agent.stop() == 0, agent.err
