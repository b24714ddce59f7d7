"""Agent enrollment through the real CLI against real TLS servers (S9, S13, S14, S16):
an admin mints a join string, a machine joins with it (the CA pin checked before the
secret leaves), reports its GPUs, is listed, is revoked and is refused at once. A server
whose CA differs never sees the secret; every failure is one line, never a traceback."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
FAKE_GPUS = [
    {"index": 0, "uuid": "GPU-11111111-2222", "model": "NVIDIA H100", "memory_mib": 81559},
    {"index": 1, "uuid": "GPU-33333333-4444", "model": "NVIDIA H100", "memory_mib": 81559},
]


def admin(server: ServerProcess, *args: str) -> str:
    """An admin command on the server's machine (its local login), which must succeed."""
    result = run_cli("agent", *args, data_dir=server.data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def on_gpu_machine(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``safeboard agent ...`` on another machine: no server data, fake GPUs."""
    env = cli_env(tmp_path / "gpu-machine-data")
    del env["SAFEBOARD_DATA_DIR"]
    env["HOME"] = str(tmp_path / "gpu-home")
    env["SAFEBOARD_AGENT_FAKE_GPUS"] = json.dumps(FAKE_GPUS)
    result = run_cli("agent", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_join_status_list_revoke(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    join = admin(server, "token", "--pool", "gpu", "--labels", "a100,fast", "--ttl", "30m")
    join = join.strip()
    assert join.startswith("sbjoin1."), join
    assert join.endswith(f"@{server.url}"), join
    state = tmp_path / "state"
    code, out, err = on_gpu_machine(tmp_path, "join", join, "--state-dir", str(state))
    assert code == 0, err
    assert "joined" in out
    assert "safeboard agent status" in out
    saved = json.loads((state / "agent.json").read_text())
    assert stat.S_IMODE((state / "agent.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert saved["url"] == server.url
    assert saved["credential"].startswith(f"sb_agent_{saved['agent_id']}_")
    assert saved["ca_pem"].strip() == server.ca_path.read_text().strip()
    # The join string is spent.
    code, _, err = on_gpu_machine(tmp_path, "join", join, "--state-dir", str(tmp_path / "s2"))
    assert code == 2
    assert "invalid join token" in one_line(err)

    code, out, err = on_gpu_machine(tmp_path, "status", "--state-dir", str(state))
    assert code == 0, err
    assert saved["agent_id"] in out
    assert "pool gpu" in out
    assert "GPU-33333333-4444" in out
    assert "a100" in out
    listed = [json.loads(line) for line in admin(server, "list", "--json").splitlines()]
    assert len(listed) == 1
    row = listed[0]
    assert row["id"] == saved["agent_id"]
    assert [gpu["uuid"] for gpu in row["gpus"]] == [g["uuid"] for g in FAKE_GPUS]
    assert row["last_address"] == "127.0.0.1"
    assert row["revoked_at"] is None
    assert "sb_agent_" not in json.dumps(listed)

    table = admin(server, "list")
    assert saved["agent_id"] in table
    assert "active" in table
    assert "revoked" in admin(server, "revoke", saved["agent_id"])
    assert "revoked" in admin(server, "list")
    code, _, err = on_gpu_machine(tmp_path, "status", "--state-dir", str(state))
    assert code == 2
    assert "revoked" in one_line(err)
    audit = run_cli("audit", "list", "--json", data_dir=server.data_dir)
    assert audit.returncode == 0, audit.stderr
    for action in ("agent.join_token_created", "agent.enrolled", "agent.revoked"):
        assert action in audit.stdout
    assert join.split(".")[2] not in audit.stdout + server.log  # the secret, nowhere


def test_a_server_whose_ca_differs_never_sees_the_secret(
    server_factory: Start, tmp_path: Path
) -> None:
    real = server_factory("--tls", name="real")
    other = server_factory("--tls", name="other")
    join = admin(real, "token", "--pool", "gpu").strip()
    # The same join string, pointed at another server (a different CA): refused before
    # anything is sent, with both pins.
    diverted = join.replace(real.url, other.url)
    pin = join.split(".")[3].split("@")[0]
    state = tmp_path / "state"
    code, out, err = on_gpu_machine(tmp_path, "join", diverted, "--state-dir", str(state))
    assert code == 2, (out, err)
    line = one_line(err)
    assert pin in line
    assert "nothing was sent" in line
    assert not (state / "agent.json").exists()
    assert "/api/v1/agent/enroll" not in other.log
    # The token was not spent: the real server still takes it.
    code, _, err = on_gpu_machine(tmp_path, "join", join, "--state-dir", str(state))
    assert code == 0, err


def test_insecure_skip_verify_warns_at_every_connection(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory("--tls")
    join = admin(server, "token", "--pool", "gpu").strip()
    wrong_pin = join.replace(join.split(".")[3].split("@")[0], "A" * 43)
    state = tmp_path / "state"
    args = ("--state-dir", str(state))
    code, _, err = on_gpu_machine(tmp_path, "join", wrong_pin, *args, "--insecure-skip-verify")
    assert code == 0, err
    assert "WARNING: --insecure-skip-verify" in err
    code, _, err = on_gpu_machine(tmp_path, "status", *args)
    assert code == 0, err
    assert "WARNING: --insecure-skip-verify" in err


def test_join_failures_are_one_clear_line(tmp_path: Path) -> None:
    state = ("--state-dir", str(tmp_path / "state"))
    code, _, err = on_gpu_machine(tmp_path, "join", "sbjoin1.nonsense", *state)
    assert code == 2
    assert "not a join string" in one_line(err)
    away = f"sbjoin1.{'0' * 12}.{'s' * 32}.{'p' * 43}@https://127.0.0.1:{free_port()}"
    code, _, err = on_gpu_machine(tmp_path, "join", away, *state)
    assert code == 2
    assert "cannot reach" in one_line(err)
    plain = f"sbjoin1.{'0' * 12}.{'s' * 32}.@http://192.0.2.1:8080"
    code, _, err = on_gpu_machine(tmp_path, "join", plain, *state)
    assert code == 2
    assert "plain http" in one_line(err)
    code, _, err = on_gpu_machine(tmp_path, "status", *state)
    assert code == 2
    assert "has not joined" in one_line(err)


def test_a_cpu_machine_s_status_and_bad_run_options(server_factory: Start, tmp_path: Path) -> None:
    """A CPU machine (no NVML, no nvidia-smi): one plain line, not "gpus (none): none".
    Bad options of `agent run` are one line naming the option, before any request:
    `--poll 0` would ask for a task again at once, in a loop (a write transaction each)."""
    server = server_factory("--tls")
    join = admin(server, "token", "--pool", "cpu").strip()
    state = tmp_path / "state"
    code, _, err = on_gpu_machine(tmp_path, "join", join, "--state-dir", str(state))
    assert code == 0, err
    env = cli_env(tmp_path / "cpu-machine-data")
    del env["SAFEBOARD_DATA_DIR"]
    env["HOME"] = str(tmp_path / "cpu-home")
    env["PATH"] = str(Path(sys.executable).parent)  # python, and no nvidia-smi
    done = run_cli("agent", "status", "--state-dir", str(state), env=env)
    assert done.returncode == 0, done.stderr
    assert "gpus: none found (neither NVML nor nvidia-smi answered" in done.stdout, done.stdout
    assert "gpus (none)" not in done.stdout
    for args, says in (
        (["--poll", "0"], "Invalid value for '--poll': from 1 s to 25 s"),
        (["--grace", "soon"], "Invalid value for '--grace': a duration such as"),
        (["--labels", "a100,a%b"], "Invalid value for '--labels': 'a%b' is not a label"),
    ):
        refused = run_cli("agent", "run", "--state-dir", str(state), *args, env=env, timeout=30)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert one_line(refused.stderr).startswith(f"safeboard: error: {says}"), refused.stderr
