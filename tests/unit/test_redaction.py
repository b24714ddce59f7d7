"""Redaction of credentials in log lines (S15)."""

from __future__ import annotations

import logging
import sys
import time
from urllib.parse import unquote, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.logconfig import log_config
from safeboard.redaction import (
    MAX_DECODINGS,
    REDACTED,
    RedactingFilter,
    RedactingFormatter,
    redact,
    redact_path,
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


# --- encodings (issue 10, item 11) -----------------------------------------------------------

KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def _every_decoding(text: str) -> set[str]:
    """``text`` and each of its decodings, with and without ``+`` as a space."""
    seen = {text}
    for decode in (unquote, unquote_plus):
        current = text
        for _ in range(20):
            current = decode(current)
            seen.add(current)
    return seen


def _leaks(secret: str, logged: str) -> bool:
    return any(secret in reading for reading in _every_decoding(logged))


def _encode(text: str, how: list[int]) -> str:
    """Each character plain (0), %XX (1), %xx (2) or double-encoded %25XX (3)."""
    out = []
    for char, way in zip(text, how, strict=True):
        code = f"{ord(char):02X}"
        out.append([char, f"%{code}", f"%{code.lower()}", f"%25{code}"][way])
    return "".join(out)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/keys/sb%5Fabc123%5F{SECRET}",
        f"/api/v1/keys/%73%62_abc123_{SECRET}",
        f"/api/v1/keys/%2573b_abc123_{SECRET}",
        f"/api/v1/keys/sb_abc123_%{ord(SECRET[0]):02x}{SECRET[1:]}",
        f"/x/token%3D{SECRET}",
        f"/x/%74oken%3A{SECRET}",
        f"/files/%70review/{SECRET}",
        f"/files%2Fpreview%2F{SECRET}",
        f"/x/Bearer+{SECRET}",
    ],
)
def test_an_encoded_secret_in_a_path_is_redacted(path: str) -> None:
    logged = redact_path(path)
    assert not _leaks(SECRET, logged), logged
    assert REDACTED in logged


@pytest.mark.parametrize(
    "query",
    [
        f"q=sb%5Fabc123%5F{SECRET}&page=2",
        f"q=%73%62%5f%61bc_{SECRET}&page=2",
        f"%2574oken={SECRET}&page=2",
        f"%25252574oken={SECRET}&page=2",
        f"t%6fken={SECRET}&page=2",
        f"q=Bearer+{SECRET}&page=2",
        f"q=%42earer%20{SECRET}&page=2",
        f"q=a%26token%3D{SECRET}&page=2",
        f"q=%2573b%255Fabc%255F{SECRET}&page=2",
    ],
)
def test_an_encoded_secret_in_a_query_is_redacted(query: str) -> None:
    logged = redact_query(query)
    assert not _leaks(SECRET, logged), logged
    assert "page=2" in logged  # what holds no secret stays as sent


def test_an_encoding_that_never_settles_is_redacted_whole() -> None:
    deep = f"sb_abc_{SECRET}"
    for _ in range(MAX_DECODINGS + 2):
        deep = deep.replace("%", "%25").replace("_", "%5F")
    assert not _leaks(SECRET, redact_path(f"/api/v1/keys/{deep}"))
    assert not _leaks(SECRET, redact_query(f"q={deep}"))


def test_harmless_encodings_are_logged_as_sent() -> None:
    assert redact_path("/api/v1/projects/my%20project/runs") == "/api/v1/projects/my%20project/runs"
    assert redact_query("q=loss%2Bacc&name=a+b&page=2") == "q=loss%2Bacc&name=a+b&page=2"
    assert (
        redact("GET /api/v1/runs?sort=-loss%2Cacc 200") == "GET /api/v1/runs?sort=-loss%2Cacc 200"
    )


def test_encoded_bearer_values_in_messages_are_redacted() -> None:
    assert not _leaks(SECRET, redact(f"header Bearer %{ord(SECRET[0]):02X}{SECRET[1:]}"))
    assert not _leaks(SECRET, redact(f"GET https://h/x?key=sb%5Fk1%5F{SECRET} failed"))


@given(
    key_id=st.text(alphabet=KEY_CHARS[:62], min_size=1, max_size=12),
    secret=st.text(alphabet=KEY_CHARS, min_size=8, max_size=43),
    data=st.data(),
)
def test_any_percent_encoding_of_a_key_is_redacted(
    key_id: str, secret: str, data: st.DataObject
) -> None:
    key = f"sb_{key_id}_{secret}"
    how = data.draw(st.lists(st.integers(0, 3), min_size=len(key), max_size=len(key)))
    encoded = _encode(key, how)
    where = data.draw(st.sampled_from(["path", "query value", "query name", "message"]))
    if where == "path":
        logged = redact_path(f"/api/v1/runs/{encoded}/artifacts")
    elif where == "query value":
        logged = redact_query(f"page=2&q={encoded}&limit=5")
    elif where == "query name":
        logged = redact_query(f"page=2&{encoded}=1")
    else:
        logged = redact(f'10.0.0.1 "GET /x/{encoded}?a=1 HTTP/1.1" 404')
    assert not _leaks(secret, logged), logged


@given(
    secret=st.text(alphabet=KEY_CHARS, min_size=8, max_size=40),
    name=st.sampled_from(["token", "api_key", "password", "session"]),
    data=st.data(),
)
def test_any_percent_encoding_of_a_secret_parameter_is_redacted(
    secret: str, name: str, data: st.DataObject
) -> None:
    pair = f"{name}={secret}"
    how = data.draw(st.lists(st.integers(0, 3), min_size=len(pair), max_size=len(pair)))
    encoded = _encode(pair, how)
    assert not _leaks(secret, redact_query(f"page=2&{encoded}&limit=5"))
    assert not _leaks(secret, redact_path(f"/x/{encoded}/y"))


@pytest.mark.parametrize(
    "line",
    [
        "x" * 20_000,
        "key" * 7_000,
        "a" * 10_000 + "://" + "b" * 10_000,
        "sb_" + "a" * 20_000,
        "GET /" + "runs" * 5_000 + "?q=a%2Bb",
    ],
    ids=["letters", "sensitive words", "url", "key prefix", "path"],
)
def test_long_lines_are_redacted_in_linear_time(line: str) -> None:
    """A request path of 16 KiB of letters (what h11 accepts) used to hold the request in
    the access log for tens of seconds of CPU: a pattern free to start anywhere in a run of
    name characters backtracked over the rest of the run from each of them."""
    started = time.perf_counter()
    redact(line)
    redact_path(line)
    redact_query(line)
    assert time.perf_counter() - started < 1.0
