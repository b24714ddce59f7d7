"""Passwords (S5): argon2id hashes, rehash on stronger parameters, NFC, the rules for new
passwords, the common-password list, and equal timing for unknown users."""

from __future__ import annotations

import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from safeboard.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHasher,
    check_new_password,
    common_passwords,
)
from safeboard.errors import InvalidRequest
from safeboard.settings import AuthSettings

# OWASP's minimum (m=19 MiB, t=2, p=1): valid settings that keep the tests fast.
OWASP_MIN = AuthSettings(argon2_memory_kib=19456, argon2_time_cost=2, argon2_parallelism=1)
PASSWORD = "plum-orbit-lantern-57"


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(OWASP_MIN)


def test_hash_is_argon2id_with_the_configured_parameters(hasher: PasswordHasher) -> None:
    stored = hasher.hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored
    assert hasher.hash(PASSWORD) != stored  # a fresh salt each time


def test_verify_right_and_wrong(hasher: PasswordHasher) -> None:
    stored = hasher.hash(PASSWORD)
    assert hasher.verify(stored, PASSWORD) is True
    assert hasher.verify(stored, PASSWORD + "x") is False
    assert hasher.verify(stored, PASSWORD.upper()) is False


@pytest.mark.parametrize(
    "stored",
    [None, "", "not-a-hash", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"],
)
def test_no_or_unreadable_hash_never_verifies(hasher: PasswordHasher, stored: str | None) -> None:
    assert hasher.verify(stored, PASSWORD) is False


def test_nfc_forms_verify_alike(hasher: PasswordHasher) -> None:
    composed = "caf\u00e9-au-lait-sous-la-pluie"
    decomposed = "cafe\u0301-au-lait-sous-la-pluie"
    assert composed != decomposed
    assert hasher.verify(hasher.hash(composed), decomposed) is True
    assert hasher.verify(hasher.hash(decomposed), composed) is True


def test_rehash_needed_when_parameters_rise(hasher: PasswordHasher) -> None:
    stored = hasher.hash(PASSWORD)
    assert hasher.needs_rehash(stored) is False
    stronger = PasswordHasher(OWASP_MIN.model_copy(update={"argon2_time_cost": 3}))
    assert stronger.needs_rehash(stored) is True
    assert stronger.verify(stored, PASSWORD) is True  # old hashes still let their users in
    assert stronger.needs_rehash(stronger.hash(PASSWORD)) is False


def test_unreadable_hash_needs_rehash(hasher: PasswordHasher) -> None:
    assert hasher.needs_rehash("not-a-hash") is True


def test_unknown_user_costs_the_same_time_as_a_wrong_password(hasher: PasswordHasher) -> None:
    stored = hasher.hash(PASSWORD)
    cases: dict[str, Callable[[], bool]] = {
        "wrong password": lambda: hasher.verify(stored, "not-the-password"),
        "no hash": lambda: hasher.verify(None, "not-the-password"),
        "unreadable hash": lambda: hasher.verify("garbage", "not-the-password"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(10):  # interleaved, so load on a shared machine hits every case alike
        for name, call in cases.items():
            start = time.perf_counter()
            assert call() is False
            samples[name].append(time.perf_counter() - start)
    reference = statistics.median(samples["wrong password"])
    for name in ("no hash", "unreadable hash"):
        ratio = statistics.median(samples[name]) / reference
        assert 0.5 < ratio < 2.0, f"{name}: {ratio:.2f} x the time of a wrong password"


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short-pw-11", "at least 12 characters"),
        ("e\u0301" * 11, "at least 12 characters"),  # 22 code points, 11 characters in NFC
        ("x" * (MAX_PASSWORD_LENGTH + 1), "at most 1024 characters"),
        ("my-name-is-ALICE-ok", "must not contain the user name"),
        ("\uff41\uff4c\uff49\uff43\uff45-in-fullwidth", "must not contain the user name"),
    ],
)
def test_rule_broken_is_named(password: str, rule: str) -> None:
    with pytest.raises(InvalidRequest, match=rule) as raised:
        check_new_password(password, username="Alice")
    assert raised.value.code == "invalid_request"


@pytest.mark.parametrize(
    "password",
    [
        "qwerty123456",
        "1qaz2wsx3edc",
        "leavemealone",
        "whosyourdaddy",
        "FinalFantasy",  # any case
        "Password1234!",  # common word + digits and punctuation
        "iloveyou2024!!",
        "sunshine!!!!",
        "123456789012",  # "123456" + digits
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14",  # fullwidth
    ],
)
def test_common_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidRequest, match="too common"):
        check_new_password(password, username="bob")


def test_examples_are_on_the_shipped_list() -> None:
    listed = common_passwords()
    for word in ("qwerty123456", "1qaz2wsx3edc", "leavemealone", "whosyourdaddy", "password"):
        assert word in listed
    assert "finalfantasy" in listed
    assert len(listed) >= 25_000
    assert common_passwords() is listed  # loaded once


@pytest.mark.parametrize(
    "password",
    [
        "plum-orbit-lantern-57",
        "correct horse battery staple",
        "e\u0301" * MAX_PASSWORD_LENGTH,  # 2048 code points, 1024 characters in NFC
        "always-a-long-walk-home",  # contains "al": too short a name to look for
    ],
)
def test_strong_passwords_are_accepted(password: str) -> None:
    check_new_password(password, username="al")


def test_random_passphrase_is_accepted() -> None:
    check_new_password(secrets.token_urlsafe(18), username="alice")


def test_list_is_not_loaded_at_import() -> None:
    code = "import sys, safeboard.accounts.passwords; print('zxcvbn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
