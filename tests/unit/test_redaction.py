"""Redaction of credentials in log lines (S15)."""

from __future__ import annotations

import logging
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.logconfig import log_config
from safeboard.redaction import (
    REDACTED,
    RedactingFilter,
    RedactingFormatter,
    redact,
    redact_query,
)

SECRET = "s3cr3tV4lu3xyz"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f"authorization: basic {SECRET}",
        f"key sb_abc123_{SECRET}",
        f"GET /x?token={SECRET}&a=1",
        f"password={SECRET}",
        f"Cookie: __Host-safeboard={SECRET}; other=1",
        f"Cookie: safeboard-8080={SECRET}",
        f"X-Safeboard-Binding: {SECRET}",
        f'{{"binding": "{SECRET}"}}',
        f"api_key={SECRET}",
        f"GET /files/preview/sbp1.{'a' * 32}.1.1700000000.s.{SECRET} HTTP/1.1",
        f"GET /files/preview/sbp1%2E{'a' * 32}%2E1%2E17%2Es%2E{SECRET} HTTP/1.1",
        f"GET /files/preview/%73bp1.x.1.2.s.{SECRET}",
    ],
)
def test_redact_removes_secret(text: str) -> None:
    out = redact(text)
    assert SECRET not in out
    assert REDACTED in out


def test_redact_query_keeps_harmless_parameters() -> None:
    out = redact_query(f"page=2&Access_Token={SECRET}&api-key={SECRET}&q=loss")
    assert SECRET not in out
    assert "page=2" in out
    assert "q=loss" in out


def test_filter_scrubs_message_and_arguments() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "header %s", (f"Bearer {SECRET}",), None
    )
    assert RedactingFilter().filter(record) is True
    assert SECRET not in record.getMessage()


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_", min_size=8, max_size=40)
)
def test_any_api_key_secret_is_redacted(secret: str) -> None:
    assert secret not in redact(f"used key sb_k1_{secret} from 10.0.0.1")


@pytest.mark.parametrize(
    "query",
    [
        f"a=1;token={SECRET}",
        f"auth_token={SECRET}",
        f"private_token={SECRET}",
        f"jwt={SECRET}",
        f"passphrase={SECRET}",
        f"startup_token={SECRET}",
        f"token%00={SECRET}",
        f"X-Api-Key={SECRET}",
    ],
)
def test_redact_query_variants(query: str) -> None:
    assert SECRET not in redact_query(query)


def test_redact_query_escapes_control_characters() -> None:
    out = redact_query("q=a%0a\nINFO forged")
    assert "\n" not in out


def test_password_in_url_is_redacted() -> None:
    out = redact(f"cannot connect to postgresql+psycopg://bob:{SECRET}@db.example/sb")
    assert SECRET not in out
    assert "postgresql+psycopg://bob:" in out


def test_formatter_scrubs_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError(f"connect failed: postgresql://u:{SECRET}@h/db token={SECRET}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    out = formatter.format(record)
    assert "RuntimeError" in out  # the traceback is there...
    assert SECRET not in out  # ...without the secrets in its message


def test_server_log_config_wires_redaction_everywhere() -> None:
    config = log_config("info")
    handler = config["handlers"]["stderr"]
    assert "redact" in handler["filters"]
    assert config["formatters"][handler["formatter"]]["()"].endswith("RedactingFormatter")
    assert config["root"]["handlers"] == ["stderr"]
    assert config["loggers"]["uvicorn.access"]["handlers"] == []  # raw query strings: off
