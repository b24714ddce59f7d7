"""Audit use cases on an engine, each its own transaction.

Changes that are audited append their entry with :func:`safeboard.audit.repository.append`
inside their own transaction; :func:`record` is for events that change nothing else, such
as a failed login.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from safeboard.audit import repository
from safeboard.audit.events import AuditAction, AuditEntry, VerifyReport
from safeboard.storage import BEGIN_IMMEDIATE

__all__ = ["has_log", "list_entries", "record", "verify"]


def record(
    engine: Engine,
    *,
    action: AuditAction,
    actor: str,
    target: str = "",
    outcome: str = "ok",
    address: str = "",
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in a transaction of its own and commit it."""
    with engine.connect() as conn:
        conn.execution_options(**{BEGIN_IMMEDIATE: True})  # SQLite: wait for the write lock
        with conn.begin():
            return repository.append(
                conn,
                action=action,
                actor=actor,
                target=target,
                outcome=outcome,
                address=address,
                detail=detail,
                at=at,
            )


def list_entries(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    limit: int = 1000,
    after_id: int | None = None,
    newest_first: bool = False,
    before_id: int | None = None,
    actor_contains: str | None = None,
) -> list[AuditEntry]:
    """Entries matching the filters; see :func:`safeboard.audit.repository.entries`."""
    with engine.connect() as conn:
        return repository.entries(
            conn,
            since=since,
            until=until,
            action=action,
            limit=limit,
            after_id=after_id,
            newest_first=newest_first,
            before_id=before_id,
            actor_contains=actor_contains,
        )


def verify(engine: Engine) -> VerifyReport:
    """Check the whole hash chain, in one read transaction (one consistent snapshot)."""
    with engine.connect() as conn:
        return repository.verify(conn)


def has_log(engine: Engine) -> bool:
    """Whether the database has the audit log table (migrations have run)."""
    with engine.connect() as conn:
        return repository.has_log(conn)
