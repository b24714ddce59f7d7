"""Database URL validation: the supported forms pass, everything else names the fix."""

from __future__ import annotations

import pytest

from safeboard.errors import ConfigError
from safeboard.storage.engine import parse_database_url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/safeboard/safeboard.db",
        "sqlite+pysqlite:////var/lib/safeboard/safeboard.db",
        "sqlite:///relative/safeboard.db",
        "postgresql+psycopg://safeboard:pw@db.example:5432/safeboard",
        "postgresql+psycopg://safeboard@/safeboard?host=/run/postgresql",
    ],
)
def test_supported_urls(url: str) -> None:
    assert parse_database_url(url).database


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("mysql+pymysql://u:pw@host/db", "postgresql+psycopg://"),
        ("postgresql://u:pw@host/db", "postgresql+psycopg://"),
        ("postgres://u:pw@host/db", "postgresql+psycopg://"),
        ("postgresql+psycopg2://u:pw@host/db", "postgresql+psycopg://"),
        ("postgresql+psycopg://u:pw@host", "dbname"),
        ("sqlite://", "sqlite:////"),
        ("sqlite:///:memory:", "sqlite:////"),
        ("sqlite:///file.db?mode=memory", "sqlite:////"),
        ("sqlite://host/file.db", "four slashes"),
        ("not a url", "sqlite:////"),
    ],
)
def test_unsupported_urls_name_the_fix(url: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_database_url(url)
    message = caught.value.message
    assert fix in message
    assert "\n" not in message
    assert "pw" not in message  # never echo a password
