"""What the audit log records: the actions, an entry, the chain hash and a verify report.

Plain domain objects and pure functions, no I/O. An entry's hash is SHA-256 (hex) over the
canonical JSON array ``[prev_hash, id, at, action, actor, target, outcome, address,
detail]``: ``at`` as ISO-8601 in UTC with microseconds, ``detail`` as the exact canonical
JSON text that is stored (so the hash covers the stored bytes and no JSON parser's choice,
such as which of two duplicate keys wins, can hide an edit). JSON strings are quoted and
escaped, so no two different entries encode alike.

``detail`` holds non-secret metadata only (a role, a count, a key's name, never a
password, token or key secret): :func:`encode_detail` refuses keys named like secrets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

__all__ = [
    "GENESIS_HASH",
    "PROBLEM_HELP",
    "AuditAction",
    "AuditEntry",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "canonical_json",
    "chain_hash",
    "check_fields",
    "encode_detail",
    "format_at",
]

GENESIS_HASH = "0" * 64  # the first entry's prev_hash
MAX_DETAIL_CHARS = 8192
_FIELD_LIMITS = {"action": 64, "actor": 200, "target": 200, "outcome": 16, "address": 64}
# A detail key is refused when, case-folded with '-' read as '_', it contains one of these
# or is one of the short names below.
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "cookie",
    "authorization",
    "api_key",
    "apikey",
    "private_key",
)
_SECRET_KEY_NAMES = frozenset({"pwd", "key", "auth", "sig", "signature", "otp"})


class AuditAction(StrEnum):
    """Every kind of event the audit log records (S16)."""

    LOGIN_OK = "login.ok"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "logout"
    STARTUP_LINK_USED = "startup_link.used"
    INVITE_ISSUED = "invite.issued"
    INVITE_USED = "invite.used"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    PASSWORD_CHANGED = "user.password_changed"  # noqa: S105  (an action, not a password)
    ROLE_CHANGED = "user.role_changed"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"  # the account removed (issue 18); the log keeps the name
    GRANT_CHANGED = "grant.changed"
    SESSIONS_REVOKED = "sessions.revoked"
    SECRETS_ROTATED = "secrets.rotated"
    SETTING_CHANGED = "setting.changed"
    ARTIFACT_DOWNLOADED = "artifact.downloaded"
    ARTIFACT_DELETED = "artifact.deleted"
    ARTIFACT_EXPIRED = "artifact.expired"  # an abandoned upload, by the system
    AGENT_JOIN_TOKEN_CREATED = "agent.join_token_created"  # noqa: S105  (an action)
    AGENT_ENROLLED = "agent.enrolled"
    AGENT_REVOKED = "agent.revoked"
    TASK_SUBMITTED = "task.submitted"
    TENSORBOARD_STARTED = "tensorboard.started"  # an instance started (target: its id)
    TASK_CANCELLED = "task.cancelled"  # a cancel asked for (by whom: the actor)
    TASK_LOST = "task.lost"  # its last attempt lost and no retry left (by the reaper)
    RUN_DELETED = "run.deleted"  # moved to its project's trash (target: run:<id>)
    RUN_RESTORED = "run.restored"  # taken out of the trash
    RUN_PURGED = "run.purged"  # its rows and files removed for good
    RETENTION_CHANGED = "project.retention_changed"  # a project's retention settings
    PROJECT_RENAMED = "project.renamed"  # target: project:<id>; detail: from, to
    PROJECT_DELETED = "project.deleted"  # to the trash with its runs
    PROJECT_RESTORED = "project.restored"
    PROJECT_PURGED = "project.purged"


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry as stored. ``action`` is a plain string so that entries written
    by another version still read."""

    id: int
    at: datetime
    action: str
    actor: str
    target: str
    outcome: str
    address: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


ProblemKind = Literal["edited", "inserted", "deleted/reordered", "broken link"]

PROBLEM_HELP: dict[ProblemKind, str] = {
    "edited": "its content no longer matches its hash",
    "inserted": "the next entry links past it: it was added after the fact",
    "deleted/reordered": "it links to an entry that is missing or out of place",
    "broken link": "its link to the entry before it does not match",
}


class Problem(NamedTuple):
    """A verify finding: the entry's id and what is wrong with it."""

    id: int
    what: ProblemKind


@dataclass(frozen=True)
class VerifyReport:
    """The result of walking the chain. ``head_*`` name the newest entry: record them
    elsewhere to detect later truncation or rewriting of the tail."""

    checked: int
    problems: list[Problem]
    head_id: int | None
    head_hash: str | None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        head = f"head #{self.head_id} {self.head_hash}" if self.head_id is not None else "empty"
        if self.ok:
            return f"audit log intact: {self.checked} entries, {head}"
        count = len(self.problems)
        return (
            f"audit log TAMPERED: {count} problem{'s' if count != 1 else ''} "
            f"in {self.checked} entries, {head}"
        )


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, UTF-8 kept as is; NaN and infinities refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_at(at: datetime) -> str:
    """``at`` as ISO-8601 in UTC with microseconds, e.g. ``2025-01-02T03:04:05.000006+00:00``."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def chain_hash(
    *,
    prev_hash: str,
    id: int,
    at: datetime,
    action: str,
    actor: str,
    target: str,
    outcome: str,
    address: str,
    detail: str,
) -> str:
    """The SHA-256 hex of an entry; ``detail`` is its stored canonical JSON text."""
    fields = [prev_hash, id, format_at(at), action, actor, target, outcome, address, detail]
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def check_fields(*, action: str, actor: str, target: str, outcome: str, address: str) -> None:
    """Refuse text the columns cannot hold: too long, NUL, not UTF-8; and an empty actor."""
    if not actor:
        raise ValueError("audit actor is empty: name who acted, e.g. 'user:alice'")
    fields = {"action": action, "actor": actor, "target": target, "outcome": outcome}
    for name, value in {**fields, "address": address}.items():
        limit = _FIELD_LIMITS[name]
        if len(value) > limit:
            raise ValueError(f"audit {name} is longer than {limit} characters")
        _check_text(value, name)


def encode_detail(detail: Mapping[str, Any] | None) -> str:
    """The canonical JSON text of ``detail``. ValueError for a key named like a secret, NaN
    or too long a text; TypeError for what is not plain JSON (str, int, float, bool, None,
    and lists and string-keyed mappings of them)."""
    _check_value(detail or {}, "detail")
    text = canonical_json(dict(detail or {}))
    if len(text) > MAX_DETAIL_CHARS:
        raise ValueError(f"audit detail is longer than {MAX_DETAIL_CHARS} characters as JSON")
    return text


def _check_value(value: object, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit {where} has a non-string key {key!r}")
            if _looks_secret(key):
                raise ValueError(
                    f"audit {where} key {key!r} is named like a secret: the audit log "
                    "records non-secret metadata only"
                )
            _check_text(key, where)
            _check_value(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]")
    elif isinstance(value, str):
        _check_text(value, where)
    elif value is not None and not isinstance(value, bool | int | float):
        raise TypeError(f"audit {where} is a {type(value).__name__}, not plain JSON")


def _looks_secret(key: str) -> bool:
    name = key.casefold().replace("-", "_")
    return name in _SECRET_KEY_NAMES or any(part in name for part in _SECRET_KEY_PARTS)


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"audit {where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"audit {where} is not valid Unicode (a lone surrogate)") from None
