"""Passwords (S5): argon2id hashing with rehash on parameter change, and the rules a new
password must pass (length, not the user name, not a common password).

Passwords are compared and hashed in Unicode NFC form, so the same password typed on
keyboards that compose characters differently verifies.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import unicodedata

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from safeboard.errors import InvalidRequest
from safeboard.settings import AuthSettings

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PasswordHasher",
    "check_new_password",
    "common_passwords",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # also bounds the work an attacker can make one hash cost
# Shorter user names are not looked for inside passwords: "al" would refuse half of them.
_MIN_NAME_IN_PASSWORD = 3


def _nfc(password: str) -> str:
    return unicodedata.normalize("NFC", password)


class PasswordHasher:
    """argon2id with the parameters of :class:`AuthSettings`.

    Building one costs one hash: the dummy hash that unknown users are verified against,
    so that they cost the same time as a wrong password.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        """The PHC string (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) of ``password``."""
        return self._argon2.hash(_nfc(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``.

        No hash (unknown user, or a user without a password) or an unreadable one spends
        the time of a real verification against the dummy hash, then answers False.
        """
        candidate = _nfc(password)
        if stored_hash is not None:
            try:
                return self._argon2.verify(stored_hash, candidate)
            except VerifyMismatchError:
                return False
            except (InvalidHashError, VerificationError):
                pass  # unreadable or unsupported: spend the time below
        # A mismatch is the expected outcome: the dummy's secret is random and never known.
        with contextlib.suppress(VerificationError):
            self._argon2.verify(self._dummy_hash, candidate)
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters (or is unreadable)."""
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords that zxcvbn ships (lower case), loaded once."""
    # Deferred: zxcvbn builds its ranked dictionaries when imported (~40 ms, a few MB).
    from zxcvbn.frequency_lists import (  # type: ignore[import-untyped]  # noqa: PLC0415
        FREQUENCY_LISTS,
    )

    words: list[str] = FREQUENCY_LISTS["passwords"]
    return frozenset(word.casefold() for word in words)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _is_common(password: str) -> bool:
    """A common password, or one followed only by digits, punctuation and the like."""
    folded = _fold(password)
    common = common_passwords()
    if folded in common:
        return True
    # Every prefix after which no letter follows: "password1234!" -> "password123", ...
    end = len(folded)
    while end > 0 and not folded[end - 1].isalpha():
        end -= 1
        if folded[:end] in common:
            return True
    return False


def check_new_password(password: str, *, username: str) -> None:
    """Raise :class:`InvalidRequest` naming the first rule that ``password`` breaks.

    Length is counted in characters of the NFC form, as it is hashed.
    """
    normalized = _nfc(password)
    if len(normalized) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(normalized) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest(f"password: must be at most {MAX_PASSWORD_LENGTH} characters")
    name = _fold(username).strip()
    if len(name) >= _MIN_NAME_IN_PASSWORD and name in _fold(normalized):
        raise InvalidRequest("password: must not contain the user name")
    if _is_common(normalized):
        raise InvalidRequest("password: too common (it is on a list of leaked passwords)")
