"""The audit chain's canonical encoding and hash, and what ``detail`` may hold (S16)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.audit.events import (
    GENESIS_HASH,
    AuditAction,
    Problem,
    VerifyReport,
    canonical_json,
    chain_hash,
    check_fields,
    encode_detail,
    format_at,
)

AT = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "prev_hash": GENESIS_HASH,
    "id": 1,
    "at": AT,
    "action": "login.ok",
    "actor": "user:alice",
    "target": "user:alice",
    "outcome": "ok",
    "address": "127.0.0.1",
    "detail": '{"via":"password"}',
}
# Pinned: a change of the encoding would make every stored chain fail to verify.
PINNED = "2fac33659704e429cc61b2da743abe7f1a0d3d969d4f750a4eaa9f841b2bd6b0"


def test_hash_is_sha256_of_the_documented_encoding() -> None:
    payload = (
        f'["{GENESIS_HASH}",1,"2025-01-02T03:04:05.000006+00:00","login.ok","user:alice",'
        '"user:alice","ok","127.0.0.1","{\\"via\\":\\"password\\"}"]'
    )
    assert hashlib.sha256(payload.encode()).hexdigest() == PINNED
    assert chain_hash(**FIELDS) == PINNED


def test_hash_is_stable_across_time_zones() -> None:
    elsewhere = AT.astimezone(timezone(timedelta(hours=-5)))
    assert chain_hash(**{**FIELDS, "at": elsewhere}) == PINNED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prev_hash", "1" * 64),
        ("id", 2),
        ("at", AT + timedelta(microseconds=1)),
        ("action", "logout"),
        ("actor", "user:mallory"),
        ("target", "user:bob"),
        ("outcome", "denied"),
        ("address", "10.0.0.1"),
        ("detail", '{"via":"key"}'),
    ],
)
def test_every_field_is_covered(field: str, value: object) -> None:
    assert chain_hash(**{**FIELDS, field: value}) != PINNED


def test_moving_text_between_fields_changes_the_hash() -> None:
    one = chain_hash(**{**FIELDS, "actor": "user:al", "target": "ice"})
    two = chain_hash(**{**FIELDS, "actor": "user:alice", "target": ""})
    assert one != two


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(st.tuples(_text, st.integers(min_value=1), _text, _text, _text))
def test_encoding_is_unambiguous(fields: tuple[str, int, str, str, str]) -> None:
    # Decoding gives the fields back, so two different entries never encode alike.
    assert tuple(json.loads(canonical_json(list(fields)))) == fields


def test_canonical_json_sorts_keys_keeps_unicode_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    with pytest.raises(ValueError, match="JSON"):
        canonical_json({"x": float("nan")})


def test_format_at_is_utc_with_microseconds() -> None:
    noon_paris = datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_at(noon_paris) == "2025-06-01T10:00:00.000000+00:00"
    with pytest.raises(ValueError, match="naive"):
        format_at(datetime(2025, 6, 1, 12, 0))  # noqa: DTZ001


def test_detail_encoding_is_canonical() -> None:
    assert encode_detail(None) == "{}"
    assert encode_detail({"z": (1, 2), "a": {"y": None, "x": True}}) == (
        '{"a":{"x":true,"y":null},"z":[1,2]}'
    )


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "Password",
        "passwd",
        "token",
        "session_token",
        "access-token",
        "secret",
        "key_secret",
        "client_secret",
        "api_key",
        "API-Key",
        "apikey",
        "key",
        "authorization",
        "cookie",
        "credentials",
        "private_key",
        "otp",
    ],
)
def test_secret_like_detail_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="named like a secret"):
        encode_detail({key: "x"})
    with pytest.raises(ValueError, match="named like a secret"):
        encode_detail({"outer": [{"inner": {key: "x"}}]})


@pytest.mark.parametrize(
    "key",
    [
        "via",
        "reason",
        "role",
        "from",
        "to",
        "sessions_ended",
        "name",
        "scope",
        "kind",
        "project_id",
        "expires_at",
        "key_id",
        "keyword",
    ],
)
def test_plain_metadata_keys_are_accepted(key: str) -> None:
    assert json.loads(encode_detail({key: 1})) == {key: 1}


@pytest.mark.parametrize(
    ("detail", "error"),
    [
        ({"at": datetime.now(UTC)}, TypeError),
        ({"raw": b"x"}, TypeError),
        ({"tags": {"a"}}, TypeError),
        ({1: "x"}, TypeError),
        ({"ratio": float("inf")}, ValueError),
        ({"note": "a\x00b"}, ValueError),
        ({"note": "\ud800"}, ValueError),
        ({"note": "x" * 9000}, ValueError),
    ],
)
def test_detail_that_is_not_plain_json_is_refused(detail: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_detail(detail)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", ""),
        ("actor", "x" * 201),
        ("target", "x" * 201),
        ("outcome", "x" * 17),
        ("address", "x" * 65),
        ("target", "a\x00b"),
        ("actor", "\udcff"),
    ],
)
def test_fields_the_columns_cannot_hold_are_refused(field: str, value: str) -> None:
    fields = {"action": "logout", "actor": "user:a", "target": "", "outcome": "ok"}
    with pytest.raises(ValueError, match=field):
        check_fields(**{**fields, "address": "", field: value})


def test_actions_are_the_documented_strings() -> None:
    assert AuditAction("login.failed") is AuditAction.LOGIN_FAILED
    assert AuditAction.PASSWORD_CHANGED.value == "user.password_changed"
    assert AuditAction.AGENT_ENROLLED.value == "agent.enrolled"
    assert len({a.value for a in AuditAction}) == len(AuditAction) >= 20


def test_verify_report_summary() -> None:
    intact = VerifyReport(3, [], 3, "ab" * 32)
    assert intact.ok
    assert intact.summary == f"audit log intact: 3 entries, head #3 {'ab' * 32}"
    assert VerifyReport(0, [], None, None).summary == "audit log intact: 0 entries, empty"
    broken = VerifyReport(3, [Problem(2, "edited")], 3, "ab" * 32)
    assert not broken.ok
    assert broken.summary.startswith("audit log TAMPERED: 1 problem in 3 entries")
