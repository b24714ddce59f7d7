"""The Slurm launcher's pure parts: how job states map onto the attempt's end, sbatch's
arguments (GPUs, CPUs, memory, time limit, nothing secret), GPUs from GRES, and the job
directory's env file (0600) and batch script (no value in it). The real cluster runs
them in tests/e2e/test_agent_slurm.py."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safeboard.agent.launchers.slurm_cli import JobInfo, Outcome, gres_gpus, outcome_of
from safeboard.agent.launchers.slurm_job import JobDir, SlurmJobOptions, sbatch_arguments
from safeboard.agent.output import Spool
from safeboard.client.job_models import TaskLease

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
TOKEN = "sb_task_" + "T" * 40
SECRET = 'it\'s a $ecret `x` "y"'


def lease(**changes: object) -> TaskLease:
    values: dict[str, object] = {
        "task_id": 7, "attempt": 2, "run_id": "r1", "command": ("python", "train.py"),
        "env": {"LR": "0.1"}, "gpus": (), "max_seconds": None, "lease_seconds": 60,
        "lease_expires_at": NOW, "deadline": None, "task_token": TOKEN,
        "secrets": {"DB_PASSWORD": SECRET},
    }  # fmt: skip
    values.update(changes)
    return TaskLease(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "exit_code", "signum", "expected"),
    [
        ("PENDING", None, None, Outcome("pending")),
        ("CONFIGURING", None, None, Outcome("pending")),
        ("REQUEUED", None, None, Outcome("pending")),
        ("RUNNING", None, None, Outcome("running")),
        ("COMPLETING", None, None, Outcome("running")),
        ("COMPLETED", 0, None, Outcome("exited", exit_code=0)),
        ("FAILED", 3, None, Outcome("exited", exit_code=3)),
        ("FAILED", 0, 9, Outcome("exited", signal=9, reason="Slurm job 5 FAILED")),
        ("CANCELLED", 0, 15, Outcome("exited", signal=15,
                                     reason="Slurm job 5 cancelled outside safeboard")),
        ("TIMEOUT", 0, None, Outcome("exited", signal=15,
                                     reason="Slurm job 5: time limit (--time) reached")),
        ("OUT_OF_MEMORY", 0, None, Outcome("exited", signal=9,
                                           reason="Slurm job 5: out of memory")),
        ("NODE_FAIL", None, None, Outcome("lost", reason="Slurm job 5 ended NODE_FAIL")),
        ("BOOT_FAIL", None, None, Outcome("lost", reason="Slurm job 5 ended BOOT_FAIL")),
        ("PREEMPTED", None, None, Outcome("lost", reason="Slurm job 5 ended PREEMPTED")),
        ("DEADLINE", 0, None, Outcome("exited", exit_code=1, reason="Slurm job 5 DEADLINE")),
    ],
)  # fmt: skip
def test_slurm_states_map_onto_the_attempt(
    state: str, exit_code: int | None, signum: int | None, expected: Outcome
) -> None:
    assert outcome_of(JobInfo("5", state, exit_code, signum)) == expected


def test_a_cancel_safeboard_asked_for_carries_no_reason_of_its_own() -> None:
    # The server says why: cancelled by whom, or the maximum duration passed.
    assert outcome_of(JobInfo("5", "CANCELLED", 0, 15), cancelled_by_us=True) == Outcome(
        "exited", signal=15
    )


def test_sbatch_arguments_carry_resources_and_no_secret(tmp_path: Path) -> None:
    options = SlurmJobOptions(partition="gpu", account="ml-team", cpus_per_task=8, mem="32G")
    deadline = datetime.now(UTC) + timedelta(seconds=150)
    args = sbatch_arguments(lease(gpus=("slurm-gpu-gpu0", "slurm-gpu-gpu1"), max_seconds=150,
                                  deadline=deadline), options, tmp_path / "out.log")  # fmt: skip
    assert args == [
        "--job-name=safeboard-task-7.2", f"--output={tmp_path / 'out.log'}", "--no-requeue",
        "--nodes=1", "--ntasks=1", "--partition=gpu", "--account=ml-team", "--gres=gpu:2",
        "--cpus-per-task=8", "--mem=32G", "--time=3",
    ]  # fmt: skip
    joined = " ".join(args)
    assert TOKEN not in joined
    assert SECRET not in joined
    assert "--export" not in joined
    assert "--time" not in " ".join(sbatch_arguments(lease(), SlurmJobOptions(), tmp_path))


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("(null)", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:1", 3),
     ("shard:8,gpu:1", 1), ("mps:100", 0)],
)  # fmt: skip
def test_gpus_from_gres(gres: str, gpus: int) -> None:
    assert gres_gpus(gres) == gpus


def test_the_env_file_is_private_and_the_script_holds_no_value(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "jobs", lease())
    env = {"SAFEBOARD_TASK_TOKEN": TOKEN, "DB_PASSWORD": SECRET, "LR": "0.1", "bad name": "x"}
    job.write(("sh", "-c", 'echo "$DB_PASSWORD|$SAFEBOARD_TASK_TOKEN|$LR"; ls ..'), env)
    assert stat.S_IMODE(job.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(job.env_file.stat().st_mode) == 0o600
    script = job.script.read_text()
    assert TOKEN not in script
    assert SECRET not in script
    assert "bad name" not in job.env_file.read_text()
    # The script as Slurm would run it: the values arrive exactly, the file is gone.
    done = subprocess.run([str(job.script)], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.stdout.splitlines()[0] == f"{SECRET}|{TOKEN}|0.1"
    assert "env" not in done.stdout.splitlines()[1:]
    assert not job.env_file.exists()
    job.remove()
    assert not job.path.exists()


def test_the_output_file_is_tailed_line_by_line(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "jobs", lease())
    spool = Spool(tmp_path / "log" / "task.log")
    job.tail(spool)  # no output file yet
    job.output.write_bytes(b"one\ntw")
    job.tail(spool)
    with job.output.open("ab") as more:
        more.write(b"o\nthree")
    job.tail(spool)
    assert spool.lines == 2
    job.tail(spool, final=True)
    spool.close()
    assert (tmp_path / "log" / "task.log").read_text() == "o one\no two\no three\n"
