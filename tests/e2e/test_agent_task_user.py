"""What a task can take from its agent (S14, docs/agents.md "The security model"), with a
real TLS server, a real ``agent run`` and a task whose code (uploaded, unpacked by the
agent) tries to read the agent's credential, the agent's environment and its logs:

- ``--task-user``: the task runs as an unprivileged user (created here with ``useradd
  --system`` when missing) and is denied all three, yet reads its code and the CA and
  logs a metric into its run with its token;
- without it: the agent is non-dumpable, so a task of the same OS user cannot read
  ``/proc/<agent pid>/environ``; ``agent.json`` it still can (documented).

As root, the second test starts the agent as the unprivileged test user (root's
CAP_SYS_PTRACE reads any process's ``/proc`` files, whatever the agent does)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safeboard.agent.isolation import AS_ROOT_WARNING
from tests.e2e.conftest import ServerProcess, run_cli, start_server
from tests.e2e.test_agent_run import (
    SETTINGS,
    USER_KEY_IN_AGENT_ENV,
    Agent,
    agent_env,
    api,
    state_of,
    wait_for,
)

pytestmark = pytest.mark.e2e

TASK_USER = "safeboard-task-test"

# The task's code: what it could read of the agent's, what it could read of its own, a
# metric posted with its token (standard library only: the task user may lack the test's
# packages), all said in one JSON line of its output.
MAIN = r"""
import ctypes, json, os, ssl, time, urllib.request

def attempt(read):
    try:
        read()
        return "read"
    except PermissionError:
        return "denied"
    except OSError as exc:
        return f"error {exc.errno}"

state = os.environ["AGENT_STATE_DIR"]
seen = {
    "agent.json": attempt(lambda: open(os.path.join(state, "agent.json")).read()),
    "agent environ": attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read()),
    "agent logs": attempt(lambda: os.listdir(os.path.join(state, "logs"))),
    "own code": attempt(lambda: open("main.py").read()),
    "ca": attempt(lambda: open(os.environ["SAFEBOARD_CA_CERT"]).read()),
    "uid": os.getuid(),
    "groups": os.getgroups(),
    "home": os.environ.get("HOME"),
    "cwd": os.getcwd(),
    "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
}
url = os.environ["SAFEBOARD_URL"] + f"/api/v1/runs/{os.environ['SAFEBOARD_RUN_ID']}/metrics"
body = {"batch_id": "taskuser-0001", "metrics": {"loss": {"steps": [0], "times": [time.time()],
                                                          "values": [0.5]}}}
request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
    "Authorization": "Bearer " + os.environ["SAFEBOARD_TASK_TOKEN"],
    "Content-Type": "application/json"})
context = ssl.create_default_context(cafile=os.environ["SAFEBOARD_CA_CERT"])
with urllib.request.urlopen(request, context=context) as answer:
    seen["metric"] = answer.status
print(json.dumps(seen), flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("task-user"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


@pytest.fixture
def state_root() -> Iterator[Path]:
    """Where agents keep their state: a folder anyone may pass through (as a home or
    /var/lib is), so that only the state directory's own 0700 keeps a task out."""
    root = Path(tempfile.mkdtemp(prefix="sb-agent-state-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def task_user() -> pwd.struct_passwd:
    """The test's task user, created when missing (CI runs as root on Debian)."""
    if os.geteuid() != 0:
        pytest.skip("--task-user needs root: this test cannot run as an unprivileged user")
    try:
        return pwd.getpwnam(TASK_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not Path(useradd).exists():
        pytest.fail(f"running as root, but useradd is missing: cannot create {TASK_USER}")
    made = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/bin/false",
                           TASK_USER], capture_output=True, text=True, check=False)  # fmt: skip
    if made.returncode != 0 and "already exists" not in made.stderr:
        pytest.fail(f"useradd {TASK_USER} failed: {made.stderr.strip()}")
    return pwd.getpwnam(TASK_USER)


def interpreter_for(user: pwd.struct_passwd) -> str:
    """A Python the task user may run (the test's own may live in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            ran = subprocess.run([candidate, "-c", "import ctypes, ssl, urllib.request"],
                                 user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
                                 capture_output=True, check=False)  # fmt: skip
        except OSError:
            continue
        if ran.returncode == 0:
            return candidate
    pytest.fail(f"no Python on this machine that {TASK_USER} may run")


def _runs_for(user: pwd.struct_passwd) -> bool:
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "PATH": os.environ["PATH"]}
    try:
        ran = subprocess.run([sys.executable, "-c", "import safeboard, httpx"], env=env,
                             user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
                             capture_output=True, check=False)  # fmt: skip
    except OSError:
        return False
    return ran.returncode == 0


def _closed_ancestor() -> tuple[Path, Path]:
    """The highest directory on the way to this Python that others may not enter (root's
    home, for a pyenv Python), and its child on that way."""
    target = Path(sys.executable).resolve()
    for parent in reversed(target.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent, target.parents[len(target.parents) - len(parent.parents) - 2]
    pytest.fail(f"{sys.executable} looks open to every user, yet {TASK_USER} cannot run it")


def as_user(user: pwd.struct_passwd, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` run as ``user``: directly when this Python is open to it; else (a pyenv
    Python in root's 0700 home, as on CI's machines) inside a private mount namespace
    where that home is a 0711 tmpfs holding only the way to this Python, so nothing of
    the real one opens up."""
    if _runs_for(user):
        return argv, {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    closed, needed = _closed_ancestor()
    script = (
        'set -e; keep=$(mktemp -d); mount --bind "$1" "$keep"; '
        'mount -t tmpfs -o mode=0711 tmpfs "$2"; mkdir -p "$1"; mount --bind "$keep" "$1"; '
        'shift 2; exec setpriv --reuid="$1" --regid="$2" --clear-groups -- "${@:3}"'
    )
    ids = [str(user.pw_uid), str(user.pw_gid)]
    wrapped = ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", script,
               "bash", str(needed), str(closed), *ids, *argv]  # fmt: skip
    return wrapped, {}


def start_agent(
    server: ServerProcess,
    root: Path,
    name: str,
    *args: str,
    user: pwd.struct_passwd | None = None,
) -> Agent:
    """``agent join`` then ``agent run`` (as ``user``, else as this test's user)."""
    made = run_cli("agent", "token", "--pool", "gpu", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    state_dir = root / name
    env = agent_env(root)
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    join = [sys.executable, "-m", "safeboard", "agent", "join", made.stdout.strip(),
            "--state-dir", str(state_dir)]  # fmt: skip
    run = [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir", str(state_dir),
           "--poll", "1s", "--grace", "1s", *args]  # fmt: skip
    who: dict[str, Any] = {}
    if user is not None:
        state_dir.mkdir(mode=0o700)
        os.chown(state_dir, user.pw_uid, user.pw_gid)
        env["HOME"] = str(state_dir)
        join, who = as_user(user, join)
        run, who = as_user(user, run)
    joined = subprocess.run(
        join, env=env, capture_output=True, text=True, check=False, cwd="/", **who
    )
    assert joined.returncode == 0, joined.stderr
    out, err = root / f"{name}.out", root / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            run, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
            cwd="/", **who,
        )  # fmt: skip
    agent = Agent(state_dir, process, out, err)
    wait_for(lambda: "serving" in agent.out or agent.process.poll() is not None, 30,
             "the agent's hello")  # fmt: skip
    assert agent.process.poll() is None, agent.err
    return agent


def run_probe(server: ServerProcess, agent: Agent, label: str, python: str) -> dict[str, Any]:
    """Submit the probe with its code; what it said, once it succeeded."""
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        info = tarfile.TarInfo("main.py")
        info.size, info.mode = len(MAIN.encode()), 0o644
        archive.addfile(info, io.BytesIO(MAIN.encode()))
    body = packed.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    with api(server) as client:
        stored = client.put(f"/api/v1/projects/ml/code/{digest}", content=body)
        assert stored.status_code in (200, 201), stored.text
        made = client.post("/api/v1/projects/ml/tasks", json={
            "command": [python, "main.py"], "labels": [label], "code_sha256": digest,
            "env": {"AGENT_STATE_DIR": str(agent.state_dir)}})  # fmt: skip
        assert made.status_code == 201, made.text
        task_id = int(made.json()["id"])
    done = state_of(server, task_id, "succeeded", "failed", timeout=60)
    with api(server) as client:
        page = wait_for(lambda: (got := client.get(f"/api/v1/tasks/{task_id}/logs").json())
                        ["lines"] and got, 20, "the task's output")  # fmt: skip
        lines = [line["text"] for line in page["lines"]]
        assert done["state"] == "succeeded", (lines, agent.out, agent.err)
        points = client.get(f"/api/v1/runs/{done['run_id']}/points", params={"metric": "loss"})
    seen: dict[str, Any] = json.loads(lines[-1])
    seen["points"] = points.json()["steps"]
    return seen


def test_a_task_user_cannot_reach_the_agent_s_credential_environment_or_logs(
    server: ServerProcess, state_root: Path
) -> None:
    user = task_user()
    python = interpreter_for(user)
    agent = start_agent(server, state_root, "isolated", "--labels", "iso",
                        "--task-user", TASK_USER)  # fmt: skip
    try:
        assert f"as user {TASK_USER}" in agent.out
        assert AS_ROOT_WARNING not in agent.err  # the advice is for the other way
        seen = run_probe(server, agent, "iso", python)
    finally:
        agent.stop()
    assert seen["agent.json"] == "denied", seen
    assert seen["agent environ"] == "denied", seen
    assert seen["agent logs"] == "denied", seen
    # Its own things it has: the unpacked code, the CA copy, a token that logs.
    assert (seen["own code"], seen["ca"], seen["metric"]) == ("read", "read", 200), seen
    assert seen["points"] == [0]
    assert seen["uid"] == user.pw_uid
    assert seen["groups"] in ([], [user.pw_gid]), seen  # none of root's groups
    assert seen["home"] == seen["cwd"], seen
    assert not seen["cwd"].startswith(str(agent.state_dir)), seen
    assert seen["dumpable"] == 1, seen  # the agent's non-dumpable flag is not inherited
    assert not Path(seen["cwd"]).exists()  # removed with the attempt


def test_without_a_task_user_the_agent_s_environment_is_still_out_of_reach(
    server: ServerProcess, state_root: Path
) -> None:
    """The agent's environment holds e.g. the API key of whoever started it: the agent
    is non-dumpable, so a task of its own OS user cannot read it. ``agent.json`` it can:
    that takes --task-user. (As root, the agent runs as the unprivileged test user: a
    root task's CAP_SYS_PTRACE reads any process's /proc files.)"""
    user = task_user() if os.geteuid() == 0 else None
    python = sys.executable  # the task runs in the agent's namespace (see as_user)
    agent = start_agent(server, state_root, "same-user", "--labels", "same", user=user)
    try:
        seen = run_probe(server, agent, "same", python)
    finally:
        agent.stop()
    assert seen["agent environ"] == "denied", seen
    assert seen["agent.json"] == "read", seen  # documented: the gap --task-user closes
    assert (seen["own code"], seen["ca"], seen["metric"]) == ("read", "read", 200), seen
    assert seen["dumpable"] == 1, seen  # the agent's non-dumpable flag is not inherited
    assert USER_KEY_IN_AGENT_ENV not in json.dumps(seen)
    # Not root: --task-user is refused with one line.
    env = {**agent_env(state_root), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir",
            str(agent.state_dir), "--task-user", "nobody"]  # fmt: skip
    argv, who = as_user(user, argv) if user is not None else (argv, {})
    refused = subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, cwd="/", timeout=60, **who
    )
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "--task-user needs the agent to run as root" in refused.stderr


def test_an_agent_run_as_root_without_a_task_user_says_what_that_costs(
    server: ServerProcess, state_root: Path
) -> None:
    """Not refused (laptops and the other tests run that way), but said once, with the
    fix; and the bad --task-user values refused with one line each."""
    task_user()  # root only; the user exists for the refusals below
    agent = start_agent(server, state_root, "as-root", "--labels", "root")
    agent.stop()
    warned = [line for line in agent.err.splitlines() if line.startswith(AS_ROOT_WARNING)]
    assert len(warned) == 1, agent.err
    assert "--task-user USER" in warned[0]
    for user, says in (("root", "'root' is root"), ("no-such-user-x", "no such user")):
        refused = run_cli("agent", "run", "--state-dir", str(agent.state_dir),
                          "--task-user", user, env=agent_env(state_root))  # fmt: skip
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert says in refused.stderr
        assert "Traceback" not in refused.stderr
