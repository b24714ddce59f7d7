"""Tasks' secrets without a server: the cipher (AES-256-GCM bound to task and name, key
ids, earlier keys), the key in secrets.toml (generated for an existing data directory,
kept by a rotation), the agent's child environment, and the CLI's ``--secret``."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from safeboard.agent.attempt import task_environment
from safeboard.agent.state import AgentState
from safeboard.cli.task_cmd import read_secrets
from safeboard.client.job_models import TaskLease, secret_values
from safeboard.datadir import ensure_data_dir, write_private
from safeboard.jobs.task_secrets import SecretBox, SecretsUnreadable
from safeboard.secret_store import ensure_secrets, rotate_secrets
from safeboard.settings import MAX_PREVIOUS_KEYS, SECRETS_FILE, load_settings

KEY = "k-" + "Zq8Yk3Lm0Nx7Rb2Vt5Hs9Jd4Gf6Cw1Ep"
OTHER = "o-" + "Pp1Qq2Rr3Ss4Tt5Uu6Vv7Ww8Xx9Yy0Zz"
VALUE = "hunter2-but-longer-4f1e9a0c6b2d"


def test_a_sealed_value_opens_for_its_task_and_name_only() -> None:
    box = SecretBox(KEY)
    sealed = box.seal(7, "API_TOKEN", VALUE)
    assert VALUE.encode() not in sealed.ciphertext
    assert len(sealed.nonce) == 12
    assert box.seal(7, "API_TOKEN", VALUE).nonce != sealed.nonce  # random per value
    assert box.open(7, "API_TOKEN", sealed) == VALUE
    for task_id, name in ((8, "API_TOKEN"), (7, "OTHER")):  # copied onto another: refused
        with pytest.raises(SecretsUnreadable, match="integrity"):
            box.open(task_id, name, sealed)
    assert KEY not in repr(box)
    assert sealed.key_id in repr(box)


def test_earlier_keys_open_and_an_unknown_key_is_named() -> None:
    sealed = SecretBox(OTHER).seal(1, "A", VALUE)
    with pytest.raises(SecretsUnreadable, match=f"sealed under key {sealed.key_id}"):
        SecretBox(KEY).open(1, "A", sealed)
    assert SecretBox(KEY, [OTHER]).open(1, "A", sealed) == VALUE
    assert SecretBox(KEY).key_id != SecretBox(OTHER).key_id
    assert SecretBox(KEY).key_id == SecretBox(KEY).key_id  # derived, stable across starts


def _file(data_dir: Path) -> dict[str, str]:
    values: dict[str, str] = tomllib.loads((data_dir / SECRETS_FILE).read_text())["secure"]
    return values


def test_an_existing_data_dir_gets_the_key_at_its_next_start(tmp_path: Path) -> None:
    data_dir = ensure_data_dir(tmp_path / "data")
    earlier = f'[secure]\nsession_secret = "{KEY}"\nsigning_key = "{OTHER}"\n'
    write_private(data_dir / SECRETS_FILE, earlier.encode())  # as an earlier version wrote it
    assert ensure_secrets(data_dir) == ["task_secrets_key"]
    values = _file(data_dir)
    assert (values["session_secret"], values["signing_key"]) == (KEY, OTHER)
    assert len(values["task_secrets_key"]) >= 43
    assert "task_secrets_previous_keys" not in values  # never generated
    assert load_settings(data_dir).secure.task_secrets_previous_keys.get_secret_value() == ""


def test_a_rotation_keeps_the_replaced_task_key(tmp_path: Path) -> None:
    data_dir = ensure_data_dir(tmp_path / "data")
    ensure_secrets(data_dir)
    first = _file(data_dir)["task_secrets_key"]
    assert "task_secrets_key" in rotate_secrets(data_dir)
    assert _file(data_dir)["task_secrets_previous_keys"] == first
    for _ in range(MAX_PREVIOUS_KEYS + 2):
        rotate_secrets(data_dir)
    kept = _file(data_dir)["task_secrets_previous_keys"].split()
    assert len(kept) == MAX_PREVIOUS_KEYS
    assert first not in kept  # the oldest go first
    secure = load_settings(data_dir).secure
    assert secure.task_secrets_previous_keys.get_secret_value().split() == kept
    shown = f"{secure!r} {secure.model_dump()}"
    assert not [key for key in kept if key in shown]  # never printed


def test_a_key_given_by_environment_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = ensure_data_dir(tmp_path / "data")
    monkeypatch.setenv("SAFEBOARD__SECURE__TASK_SECRETS_KEY", KEY)
    ensure_secrets(data_dir)
    assert "task_secrets_key" not in rotate_secrets(data_dir)
    assert "task_secrets_previous_keys" not in _file(data_dir)


def test_weak_earlier_keys_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = ensure_data_dir(tmp_path / "data")
    ensure_secrets(data_dir)
    monkeypatch.setenv("SAFEBOARD__SECURE__TASK_SECRETS_PREVIOUS_KEYS", f"{KEY} changeme")
    with pytest.raises(Exception, match="task_secrets_previous_keys") as refused:
        load_settings(data_dir)
    assert KEY not in str(refused.value)


CREDENTIAL = "sb_agent_0123456789ab_" + "S" * 43
STATE = AgentState(url="https://board:8443", agent_id="0123456789ab", name="gpu-1",
                   pool="gpu", credential=CREDENTIAL, ca_pem="PEM")  # fmt: skip


def lease(secrets: dict[str, str]) -> TaskLease:
    return TaskLease(7, 2, "a" * 32, ("python", "t.py"), {"LR": "0.1"}, ("GPU-1",), None, 60,
                     datetime(2026, 12, 5, tzinfo=UTC), None, "sb_task_0123456789ab_" + "T" * 43,
                     secrets=secrets)  # fmt: skip


def test_secrets_reach_the_environment_but_replace_nothing_of_safeboard() -> None:
    secrets = {"API_TOKEN": VALUE, "LR": "secret lr", "SAFEBOARD_RUN_ID": "x",
               "CUDA_VISIBLE_DEVICES": "0,1,2", "NVIDIA_VISIBLE_DEVICES": "all"}  # fmt: skip
    given = lease(secrets)
    env = task_environment(given, STATE, Path("/s/ca.pem"), {"PATH": "/usr/bin"})
    assert env["API_TOKEN"] == VALUE
    assert env["LR"] == "secret lr"  # after the task's env (the server refuses overlaps)
    assert env["SAFEBOARD_RUN_ID"] == "a" * 32
    assert (env["CUDA_VISIBLE_DEVICES"], env["NVIDIA_VISIBLE_DEVICES"]) == ("GPU-1", "GPU-1")
    assert VALUE not in repr(given)
    assert VALUE not in " ".join(given.command)
    assert secret_values(given)[0] == given.task_token  # the longest first
    assert VALUE in secret_values(given)


def test_the_lease_answer_is_read_with_its_secrets() -> None:
    answer = {"id": 7, "attempt": 1, "run_id": "a" * 32, "command": ["true"], "env": {},
              "gpus": [], "max_seconds": None, "lease_seconds": 60,
              "lease_expires_at": "2026-12-05T08:00:00Z", "deadline": None,
              "task_token": None, "secrets": {"API_TOKEN": VALUE}}  # fmt: skip
    assert TaskLease.from_json(answer).secrets == {"API_TOKEN": VALUE}
    assert TaskLease.from_json({**answer, "secrets": None}).secrets == {}


def test_the_cli_reads_secrets_from_the_environment_or_a_file(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text(VALUE + "\n")
    found = read_secrets(("API_TOKEN", f"DB_PASSWORD=@{file}"), {"API_TOKEN": "from env"})
    assert found == {"API_TOKEN": "from env", "DB_PASSWORD": VALUE}  # one newline less


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (f"API_TOKEN={VALUE}", "visible to every user of this machine"),
        ("API_TOKEN=", "visible to every user of this machine"),
        ("MISSING", "MISSING is not set in your environment"),
        ("NOFILE=@/nonexistent/pw", "cannot read /nonexistent/pw"),
        ("=@x", "write NAME or NAME=@FILE"),
    ],
)
def test_the_cli_refuses_a_value_on_the_command_line(spec: str, says: str) -> None:
    with pytest.raises(click.ClickException) as refused:
        read_secrets((spec,), {})
    message = refused.value.format_message()
    assert says in message
    assert VALUE not in message
