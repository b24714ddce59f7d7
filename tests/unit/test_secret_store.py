"""secrets.toml: generated at first start, 0600, refused when exposed, rotated (S2)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from safeboard.datadir import ensure_data_dir
from safeboard.errors import ConfigError
from safeboard.secret_store import ensure_secrets, rotate_secrets, secret_names
from safeboard.settings import load_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _values(directory: Path) -> dict[str, str]:
    return tomllib.loads((directory / "secrets.toml").read_text())["secure"]


def test_first_start_generates_every_secret_privately(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "new" / "data")
    assert _mode(directory) == 0o700
    assert ensure_secrets(directory) == secret_names()
    assert _mode(directory / "secrets.toml") == 0o600
    values = _values(directory)
    assert set(values) == set(secret_names())
    for value in values.values():
        assert len(value) >= 43  # 32 random bytes, URL-safe base64
    assert len(set(values.values())) == len(values)  # independent keys
    load_settings(directory)  # and the generated ones pass the strength check


def test_second_start_keeps_secrets(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    ensure_secrets(directory)
    before = _values(directory)
    assert ensure_secrets(directory) == []
    assert _values(directory) == before


def test_missing_secret_is_added_without_touching_others(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    ensure_secrets(directory)
    values = _values(directory)
    kept = {"session_secret": values["session_secret"]}
    (directory / "secrets.toml").write_text(
        f'[secure]\nsession_secret = "{kept["session_secret"]}"\n'
    )
    (directory / "secrets.toml").chmod(0o600)
    assert ensure_secrets(directory) == ["signing_key", "task_secrets_key"]
    assert _values(directory)["session_secret"] == kept["session_secret"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_exposed_secrets_file_stops_the_start(tmp_path: Path, mode: int) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    ensure_secrets(directory)
    (directory / "secrets.toml").chmod(mode)
    with pytest.raises(ConfigError, match=r"secrets\.toml is readable by group or others") as e:
        ensure_secrets(directory)
    assert "chmod 600" in e.value.message


def test_exposed_data_dir_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        ensure_data_dir(directory)


def test_garbled_secrets_file_is_a_clear_error(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    (directory / "secrets.toml").write_text("[secure\nbroken")
    (directory / "secrets.toml").chmod(0o600)
    with pytest.raises(ConfigError, match="not valid TOML"):
        ensure_secrets(directory)


def test_weak_secret_in_file_is_refused(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    ensure_secrets(directory)
    values = _values(directory)
    (directory / "secrets.toml").write_text(
        f'[secure]\nsession_secret = "password"\nsigning_key = "{values["signing_key"]}"\n'
    )
    with pytest.raises(ConfigError, match="session_secret"):
        load_settings(directory)


def test_rotate_replaces_every_secret(tmp_path: Path) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    ensure_secrets(directory)
    before = _values(directory)
    assert rotate_secrets(directory) == secret_names()
    after = _values(directory)
    assert all(after[name] != before[name] for name in before)
    assert _mode(directory / "secrets.toml") == 0o600


def test_rotate_leaves_environment_secrets_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = ensure_data_dir(tmp_path / "d")
    monkeypatch.setenv("SAFEBOARD__SECURE__SIGNING_KEY", "Zq8vN3xL0pR7tY2wK5mB9cH4jF6gD1sA-_Qe")
    assert ensure_secrets(directory) == ["session_secret", "task_secrets_key"]
    assert rotate_secrets(directory) == ["session_secret", "task_secrets_key"]
    assert "signing_key" not in _values(directory)
