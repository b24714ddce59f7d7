"""Redaction of credentials in log lines (S15)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.redaction import REDACTED, RedactingFilter, redact, redact_query

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
        f"api_key={SECRET}",
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
