"""``safeboard agent run --launcher slurm`` against a real one-node Slurm cluster
(tests/support/slurm.py: Debian's munged, slurmctld and slurmd as root in private
namespaces) and a real TLS server, driven through the real CLI: a task runs as a batch
job, its output is its log, it completes; cancel (scancel); the maximum duration (the
job's --time, the server's deadline); a node failure (the attempt lost, retried by
policy); the task token never on a command line, in the job's record or its stored
script, and its 0600 file gone once read."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeboard.agent.launchers.slurm_cli import Slurm, outcome_of
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import (
    SETTINGS,
    Agent,
    agent_env,
    api,
    command_lines,
    state_of,
    submit,
    task,
    wait_for,
)
from tests.support.slurm import SlurmCluster

pytestmark = pytest.mark.e2e

LABEL = "slurm"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    started = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()  # fails loudly
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("slurm-srv"), "--tls", settings=SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    yield started
    started.stop()


@pytest.fixture(scope="module")
def agent(
    server: ServerProcess, cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    import subprocess

    tmp = tmp_path_factory.mktemp("slurm-agent")
    made = run_cli("agent", "token", "--pool", "hpc", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    state_dir = tmp / "state"
    env = cluster.env(agent_env(tmp))
    joined = run_cli("agent", "join", made.stdout.strip(), "--state-dir", str(state_dir),
                     env=env)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    out, err = tmp / "agent.out", tmp / "agent.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "agent", "run", "--state-dir", str(state_dir),
             "--poll", "1s", "--grace", "1s", "--drain-timeout", "5s", "--labels", LABEL,
             "--launcher", "slurm", "--partition", "debug", "--max-jobs", "4"],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    started = Agent(state_dir, process, out, err)
    wait_for(lambda: "serving" in started.out or process.poll() is not None, 30, "hello")
    assert process.poll() is None, started.err
    assert "through slurm" in started.out
    assert "its Slurm jobs run as root on the compute nodes" in started.err
    yield started
    assert started.stop() == 0, started.err
    assert "Traceback" not in started.err


def job_of(agent: Agent, task_id: int, attempt: int = 1) -> str:
    """The Slurm job id the agent said it submitted for the attempt."""
    marker = f"task {task_id} attempt {attempt}: Slurm job "
    line = wait_for(lambda: next((x for x in agent.out.splitlines() if marker in x), None),
                    30, f"job of task {task_id}")  # fmt: skip
    return str(line.split(marker)[1].split()[0])


def slurm_state(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.command("squeue", "--noheader", "--states=all", "-j", job_id, "-o", "%T").strip()


TASK = (
    "import json, os, sys, time\n"
    "here = os.getcwd()\n"
    "env_file = os.path.join(os.path.dirname(here), 'env')\n"
    "json.dump({'env': dict(os.environ), 'env_file_left': os.path.exists(env_file),\n"
    "           'cwd': here, 'dir_mode': oct(os.stat(os.path.dirname(here)).st_mode & 0o777)},\n"
    "          open(sys.argv[1], 'w'))\n"
    "print('hello from slurm', flush=True)\n"
    "print('my token is', os.environ['SAFEBOARD_TASK_TOKEN'], flush=True)\n"
    "print('secret', os.environ['DB_PASSWORD'], file=sys.stderr, flush=True)\n"
    "open(sys.argv[1] + '.ready', 'w').close()\n"
    "time.sleep(4)\n"
    "print('bye', flush=True)\n"
)


def test_a_task_runs_as_a_slurm_job_with_its_log_and_no_token_in_sight(
    server: ServerProcess, cluster: SlurmCluster, agent: Agent, tmp_path: Path
) -> None:
    dump = tmp_path / "job.json"
    secret = "pa55-" + "s" * 20
    env = {**cli_env(server.data_dir), "DB_PASSWORD": secret}
    made = run_cli("task", "submit", "--project", "ml", "--no-code", "--label", LABEL,
                   "--secret", "DB_PASSWORD", "--env", "LR=0.1", "--max-duration", "10m",
                   "--json", "--", sys.executable, "-c", TASK, str(dump), env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    task_id = int(json.loads(made.stdout)["id"])
    job_id = job_of(agent, task_id)
    wait_for(lambda: Path(f"{dump}.ready").exists(), 60, "the job running")
    got = json.loads(dump.read_text())
    token = got["env"]["SAFEBOARD_TASK_TOKEN"]
    assert token.startswith("sb_task_")
    assert got["env"]["DB_PASSWORD"] == secret
    assert got["env"]["LR"] == "0.1"
    assert got["env"]["SAFEBOARD_TASK_ID"] == str(task_id)
    assert got["env"]["SLURM_JOB_ID"] == job_id
    assert "SAFEBOARD_API_KEY" not in got["env"]
    assert got["env_file_left"] is False  # read and removed by the batch script
    assert got["dir_mode"] == "0o700"

    # Nowhere else to be read while it runs: argv of every process, the job's record,
    # the script Slurm stored, accounting (disabled on this cluster: it must not fail
    # open), the job's name and comment.
    record = cluster.command("scontrol", "show", "job", "-o", job_id)
    script = cluster.command("scontrol", "write", "batch_script", job_id, "-")
    queue = cluster.command("squeue", "--noheader", "--states=all", "-o", "%all")
    accounting = cluster.command("sacct", "--noheader", "--parsable2", "-j", job_id,
                                 "-o", "JobID,JobName,Comment,SubmitLine,WorkDir",
                                 check=False)  # fmt: skip
    for seen in ("\n".join(command_lines()), record, script, queue, accounting):
        assert token not in seen
        assert secret not in seen
    assert f"JobName=safeboard-task-{task_id}.1" in record
    assert "TimeLimit=00:10:00" in record
    assert '. "$env_file"' in script
    assert 'rm -f "$env_file"' in script

    done = state_of(server, task_id, "succeeded", "failed", timeout=60)
    assert done["state"] == "succeeded", done
    assert done["attempts"][0]["exit_code"] == 0
    assert slurm_state(cluster, job_id) == "COMPLETED"
    assert not Path(got["cwd"]).parent.exists()  # the job directory is gone

    shown = run_cli("task", "logs", str(task_id), data_dir=server.data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "hello from slurm" in shown.stdout
    assert "bye" in shown.stdout
    assert "my token is [redacted]" in shown.stdout + shown.stderr
    assert token not in shown.stdout + shown.stderr
    assert secret not in shown.stdout + shown.stderr
    assert token not in agent.out + agent.err


def test_cancel_reaches_the_job(server: ServerProcess, cluster: SlurmCluster, agent: Agent) -> None:
    task_id = submit(server, LABEL, "sleep", "300")
    job_id = job_of(agent, task_id)
    state_of(server, task_id, "running", timeout=60)
    cancelled = run_cli("task", "cancel", str(task_id), data_dir=server.data_dir)
    assert cancelled.returncode == 0, cancelled.stderr
    assert state_of(server, task_id, "cancelled", "failed", timeout=60)["state"] == "cancelled"
    assert slurm_state(cluster, job_id) == "CANCELLED"
    assert f"scancel {job_id}" in agent.out


def test_the_maximum_duration_is_the_job_s_time_limit_and_ends_it(
    server: ServerProcess, cluster: SlurmCluster, agent: Agent
) -> None:
    task_id = submit(server, LABEL, "sleep", "300", max_seconds=3)
    job_id = job_of(agent, task_id)
    record = cluster.command("scontrol", "show", "job", "-o", job_id)
    assert "TimeLimit=00:01:00" in record  # 3 s, in Slurm's whole minutes
    done = state_of(server, task_id, "failed", "succeeded", "cancelled", timeout=60)
    assert done["state"] == "failed", done
    assert "maximum duration (3 s) passed" in done["attempts"][0]["reason"]
    assert slurm_state(cluster, job_id) in ("CANCELLED", "TIMEOUT")


def test_slurm_s_own_time_limit_reads_as_timeout(cluster: SlurmCluster, tmp_path: Path) -> None:
    # The backstop behind the server's deadline, on the real cluster: --time=1 (a minute,
    # Slurm's least), the job's end read back as the launcher reads it.
    out = cluster.command("sbatch", "--parsable", "--time=1", f"--output={tmp_path}/o.log",
                          "--wrap", "exec sleep 600").strip()  # fmt: skip
    slurm = Slurm(parent=cluster.env(dict(os.environ)))
    ended = wait_for(lambda: slurm.state(out) not in (None, "PENDING", "RUNNING", "COMPLETING")
                     and slurm.final(out, slurm.state(out)), 180, "the time limit")  # fmt: skip
    assert ended.state == "TIMEOUT"
    outcome = outcome_of(ended)
    assert (outcome.kind, outcome.signal) == ("exited", 15)
    assert outcome.reason == f"Slurm job {out}: time limit (--time) reached"


def once_then_quick(mark: Path) -> tuple[str, ...]:
    """A command whose first attempt runs until stopped and whose next one finishes."""
    script = f"if [ -e {mark} ]; then echo finished; else touch {mark}; exec sleep 600; fi"
    return ("sh", "-c", script)


def test_a_node_failure_loses_the_attempt_and_the_task_is_retried(
    server: ServerProcess, cluster: SlurmCluster, agent: Agent, tmp_path: Path
) -> None:
    task_id = submit(server, LABEL, *once_then_quick(tmp_path / "ran"))
    first = job_of(agent, task_id)
    state_of(server, task_id, "running", timeout=60)
    node = cluster.host
    cluster.command("scontrol", "update", f"nodename={node}", "state=down", "reason=test")
    try:
        wait_for(lambda: slurm_state(cluster, first) == "NODE_FAIL", 30, "NODE_FAIL")
        lost = wait_for(lambda: (t := task(server, task_id))["attempts"][0]["state"] == "lost"
                        and t, 30, "attempt 1 lost")  # fmt: skip
        assert lost["attempts"][0]["state"] == "lost"
    finally:  # (ReturnToService=2 may have brought it back already: then nothing to do)
        if "down" in cluster.node_state():
            cluster.command("scontrol", "update", f"nodename={node}", "state=resume")
    done = state_of(server, task_id, "succeeded", "failed", "lost", timeout=90)
    assert done["state"] == "succeeded", done
    assert [a["state"] for a in done["attempts"]] == ["lost", "succeeded"]
    assert job_of(agent, task_id, 2) != first
    assert f"Slurm job {first} ended NODE_FAIL" in agent.out
    logs = run_cli("task", "logs", str(task_id), "--attempt", "1", data_dir=server.data_dir)
    assert "NODE_FAIL" in logs.stdout + logs.stderr


def test_a_job_slurm_does_not_know_reads_as_vanished(cluster: SlurmCluster) -> None:
    slurm = Slurm(parent=cluster.env(dict(os.environ)))
    assert slurm.state("987654") is None
    assert slurm.final("987654", None) is None  # neither scontrol nor sacct knows it


def test_a_job_the_scheduler_forgot_is_detected_lost_and_retried(
    server: ServerProcess, cluster: SlurmCluster, agent: Agent, tmp_path: Path
) -> None:
    # Last in this module: slurmctld restarts with its state wiped (job ids start again).
    task_id = submit(server, LABEL, *once_then_quick(tmp_path / "ran"))
    first = job_of(agent, task_id)
    state_of(server, task_id, "running", timeout=60)
    cluster.restart_controller(clear=True)
    lost = wait_for(lambda: (t := task(server, task_id))["attempts"][0]["state"] == "lost" and t,
                    60, "attempt 1 lost")  # fmt: skip
    assert lost["attempts"][0]["state"] == "lost"
    assert f"Slurm job {first} vanished" in agent.out
    done = state_of(server, task_id, "succeeded", "failed", "lost", timeout=90)
    assert done["state"] == "succeeded", done
    logs = run_cli("task", "logs", str(task_id), "--attempt", "1", data_dir=server.data_dir)
    assert "vanished: neither squeue, scontrol nor sacct knows it" in logs.stdout + logs.stderr


def test_the_slurm_options_are_refused_in_one_line_where_they_cannot_work(
    server: ServerProcess, tmp_path: Path
) -> None:
    made = run_cli("agent", "token", "--pool", "hpc", data_dir=server.data_dir)
    state_dir = tmp_path / "state"
    # An empty configuration: Slurm refuses it at once (a missing file it retries for 60 s).
    empty = tmp_path / "empty-slurm.conf"
    empty.write_text("")
    env = {**agent_env(tmp_path), "SLURM_CONF": str(empty)}
    joined = run_cli("agent", "join", made.stdout.strip(), "--state-dir", str(state_dir),
                     env=env)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    for args, said in [
        (["--partition", "gpu"], "are for --launcher slurm"),
        (["--launcher", "slurm", "--gpus", "0"], "Slurm places the jobs"),
        (["--launcher", "slurm", "--mem", "lots"], "a size such as 500M"),
        (["--launcher", "slurm"], "--launcher slurm: squeue: fatal: "),  # no configuration
    ]:
        done = run_cli("agent", "run", "--state-dir", str(state_dir), *args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
