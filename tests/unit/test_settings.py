"""Settings: precedence, derived defaults, refusals (S1, S2)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from safeboard.errors import ConfigError
from safeboard.secret_store import ensure_secrets
from safeboard.settings import is_loopback_host, is_wildcard_host, load_settings

STRONG = "Zq8vN3xL0pR7tY2wK5mB9cH4jF6gD1sA-_Qe"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir(mode=0o700)
    ensure_secrets(directory)
    return directory


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SAFEBOARD"):
            monkeypatch.delenv(name)


def test_defaults_bind_loopback_without_tls_on_8080(data_dir: Path) -> None:
    settings = load_settings(data_dir)
    assert settings.server.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.tls_on is False
    assert settings.database_url == f"sqlite:///{data_dir / 'safeboard.db'}"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_non_loopback_bind_turns_tls_on_at_8443(data_dir: Path, host: str) -> None:
    settings = load_settings(data_dir, server={"host": host})
    assert settings.tls_on is True
    assert settings.port == 8443


def test_plain_http_off_loopback_is_refused_naming_the_fix(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--behind-proxy"):
        load_settings(data_dir, server={"host": "0.0.0.0"}, tls={"enabled": False})


def test_plain_http_off_loopback_allowed_behind_named_proxy(data_dir: Path) -> None:
    settings = load_settings(
        data_dir,
        server={"host": "0.0.0.0", "behind_proxy": "10.0.0.0/8,192.168.1.1"},
        tls={"enabled": False},
    )
    assert settings.tls_on is False
    assert [str(n) for n in settings.server.behind_proxy] == ["10.0.0.0/8", "192.168.1.1/32"]


def test_behind_proxy_alone_keeps_tls_on_off_loopback(data_dir: Path) -> None:
    settings = load_settings(data_dir, server={"host": "0.0.0.0", "behind_proxy": "10.0.0.1"})
    assert settings.tls_on is True


def test_cert_without_key_is_refused(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key go together"):
        load_settings(data_dir, tls={"cert": data_dir / "c.pem"})


def test_given_certificate_turns_tls_on_even_on_loopback(data_dir: Path) -> None:
    settings = load_settings(data_dir, tls={"cert": data_dir / "c.pem", "key": data_dir / "k.pem"})
    assert settings.tls_on is True
    assert settings.port == 8443


def test_precedence_flag_over_env_over_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data_dir / "safeboard.toml").write_text('[server]\nport = 9001\nlog_level = "debug"\n')
    assert load_settings(data_dir).port == 9001
    monkeypatch.setenv("SAFEBOARD__SERVER__PORT", "9002")
    settings = load_settings(data_dir)
    assert settings.port == 9002
    assert settings.server.log_level == "debug"  # the file still counts for other keys
    assert load_settings(data_dir, server={"port": 9003}).port == 9003


def test_env_lists_accept_commas(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEBOARD__TLS__SAN", "a.example, b.example")
    assert load_settings(data_dir).tls.san == ["a.example", "b.example"]


def test_unknown_setting_is_refused_with_its_name(data_dir: Path) -> None:
    (data_dir / "safeboard.toml").write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(data_dir)


def test_bad_value_names_setting_and_env_var(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEBOARD__SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"server\.port \(SAFEBOARD__SERVER__PORT\)"):
        load_settings(data_dir)


def test_secrets_in_settings_file_are_refused(data_dir: Path) -> None:
    (data_dir / "safeboard.toml").write_text(f'[secure]\nsession_secret = "{STRONG}"\n')
    with pytest.raises(ConfigError, match="belong in"):
        load_settings(data_dir)


def test_secret_from_environment_wins(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEBOARD__SECURE__SESSION_SECRET", STRONG)
    assert load_settings(data_dir).secure.session_secret.get_secret_value() == STRONG


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("tQ9xShrt7", "shorter than 32 bytes"),
        ("changeme-changeme-changeme-changeme-1234", "known-weak"),
        ("my-super-Secret-key-for-production-2026!", "known-weak"),
        ("ab" * 20, "too repetitive"),
    ],
)
def test_weak_secret_from_environment_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("SAFEBOARD__SECURE__SIGNING_KEY", value)
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings(data_dir)
    assert value not in caught.value.message  # the refusal never echoes the secret
    assert "SAFEBOARD__SECURE__SIGNING_KEY" in caught.value.message


def test_no_secret_in_repr_or_dump(data_dir: Path) -> None:
    settings = load_settings(data_dir)
    secret = settings.secure.session_secret.get_secret_value()
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert secret not in str(settings.model_dump(mode="json"))
    assert secret not in settings.model_dump_json()


def test_settings_without_secrets_cannot_be_built(tmp_path: Path) -> None:
    # No secret has a default anywhere: without secrets.toml or the environment, no start.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"secure"):
        load_settings(empty)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.org", False),
        ("localhost.example.org", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_database_password_is_never_shown(data_dir: Path) -> None:
    url = "postgresql+psycopg://sb:Hunter2Hunter2@db.example/safeboard"
    settings = load_settings(data_dir, database={"url": url})
    assert settings.database_url == url  # the engine gets the real thing
    assert "Hunter2Hunter2" not in repr(settings)
    assert "Hunter2Hunter2" not in settings.model_dump_json()
    assert settings.model_dump(mode="json")["database"]["url"] == (
        "postgresql+psycopg://sb:***@db.example/safeboard"
    )


@pytest.mark.parametrize("networks", ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2000::/16"])
def test_overly_broad_proxy_networks_are_refused(data_dir: Path, networks: str) -> None:
    with pytest.raises(ConfigError, match="too broad"):
        load_settings(data_dir, server={"behind_proxy": networks})


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"[server\nport=", "not valid UTF-8 TOML"), (b"\xff\xfe[server]", "not valid UTF-8 TOML")],
)
def test_unreadable_settings_file_is_a_config_error(
    data_dir: Path, content: bytes, needle: str
) -> None:
    (data_dir / "safeboard.toml").write_bytes(content)
    with pytest.raises(ConfigError, match=needle):
        load_settings(data_dir)


def test_malformed_json_in_environment_is_a_config_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEBOARD__SERVER", "{not json")
    with pytest.raises(ConfigError, match="SAFEBOARD__SERVER"):
        load_settings(data_dir)


@pytest.mark.parametrize(
    ("host", "wildcard"),
    [("0.0.0.0", True), ("::", True), ("", True), ("127.0.0.1", False), ("::1", False),
     ("10.0.0.1", False), ("example.org", False)],
)  # fmt: skip
def test_is_wildcard_host(host: str, wildcard: bool) -> None:
    assert is_wildcard_host(host) is wildcard


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://ML.example.com/", "https://ml.example.com"),
        ("http://gpu-box:8080", "http://gpu-box:8080"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
        ("  ", None),
    ],
)
def test_public_url_is_kept_as_an_origin(data_dir: Path, given: str, origin: str | None) -> None:
    assert load_settings(data_dir, server={"public_url": given}).server.public_url == origin


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("ml.example.com", "must start with https:// or http://"),
        ("ftp://ml.example.com", "must start with https:// or http://"),
        ("https://ml.example.com/safeboard", "has a path (/safeboard)"),
        ("https://ml.example.com/?a=1", "has a query"),
        ("https://bob:pw@ml.example.com", "not repeated: it holds a password"),
        ("https://", "needs a host name"),
        ("https://ml.example.com:99999", "is not a URL"),
        ("https://ml example.com", "characters a host name cannot"),
        ("https://ml.exa%6dple.com", "characters a host name cannot"),
    ],
)
def test_public_url_refuses_what_is_no_origin(data_dir: Path, given: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as refused:
        load_settings(data_dir, server={"public_url": given})
    assert "https://NAME" in str(refused.value)
