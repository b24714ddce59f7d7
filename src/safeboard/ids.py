"""The ids the server makes for runs and artifacts: 32 lowercase hex digits (128 random
bits). One definition for making them and for checking a string that claims to be one."""

from __future__ import annotations

import re
import secrets

__all__ = ["ID_PATTERN", "is_id", "new_id"]

ID_PATTERN = "[0-9a-f]{32}"
_ID = re.compile(ID_PATTERN)


def new_id() -> str:
    return secrets.token_hex(16)


def is_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None
