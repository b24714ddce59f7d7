"""The database as an auditor reads it: reachable, migrated, the clocks agree, and the
accounts, keys and agents that weaken an installation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from safeboard.doctor.findings import Finding, Severity
from safeboard.storage import UtcDateTime, current_revision, head_revision

__all__ = ["database_checks"]

UNUSED_KEY_DAYS = 90
SILENT_AGENT = timedelta(days=1)
CLOCK_SKEW = timedelta(seconds=2)


def database_checks(engine: sa.Engine, now: datetime | None = None) -> Iterator[Finding]:
    now = now or datetime.now(UTC)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        yield Finding(
            "database.reachable",
            Severity.ERROR,
            f"the database does not answer ({type(getattr(exc, 'orig', None) or exc).__name__})",
            "start it or fix database.url; `safeboard config show` prints the URL",
        )
        return
    yield Finding("database.reachable", Severity.OK, "the database answers")
    current, head = current_revision(engine), head_revision()
    if current is None:
        yield Finding(
            "database.migrations",
            Severity.WARNING,
            "the database has no schema yet",
            "safeboard db upgrade (or start the server)",
        )
        return
    if current != head:
        yield Finding(
            "database.migrations",
            Severity.WARNING,
            f"the schema is at {current}, this safeboard's is {head}",
            "safeboard db upgrade (the server also upgrades at its start)",
        )
        return
    yield Finding("database.migrations", Severity.OK, f"schema at {head}")
    with engine.connect() as conn:
        yield from _clock(conn, now)
        yield from _admins(conn)
        yield from _keys(conn, now)
        yield from _agents(conn, now)


def _clock(conn: sa.Connection, now: datetime) -> Iterator[Finding]:
    if conn.dialect.name != "postgresql":
        return  # SQLite is a file on this machine: one clock
    theirs = conn.execute(sa.text("SELECT CURRENT_TIMESTAMP")).scalar_one()
    skew = abs(theirs.astimezone(UTC) - now)
    if skew > CLOCK_SKEW:
        yield Finding(
            "database.clock",
            Severity.WARNING,
            f"this machine's clock and the database's differ by {skew.total_seconds():.1f} s: "
            "expiries and leases are judged by both",
            "run NTP (chrony, systemd-timesyncd) on both machines",
        )
    else:
        yield Finding("database.clock", Severity.OK, "the clocks agree")


def _admins(conn: sa.Connection) -> Iterator[Finding]:
    names = (
        conn.execute(
            sa.text(
                "SELECT username FROM users WHERE role = 'admin' AND is_active AND "
                "password_hash IS NULL ORDER BY username"
            )
        )
        .scalars()
        .all()
    )
    for name in names:
        yield Finding(
            "accounts.admin_password",
            Severity.INFO,
            f"admin {name} has no password: signs in only with the startup link "
            "on the server's machine",
            f"safeboard user set-password {name}, if {name} signs in from elsewhere",
        )


def _keys(conn: sa.Connection, now: datetime) -> Iterator[Finding]:
    live = sa.text(
        "SELECT k.id, k.name, u.username, k.expires_at, k.created_at, k.last_used_at "
        "FROM api_keys k JOIN users u ON u.id = k.user_id "
        "WHERE k.revoked_at IS NULL ORDER BY k.created_at"
    ).columns(expires_at=UtcDateTime(), created_at=UtcDateTime(), last_used_at=UtcDateTime())
    unused_before = now - timedelta(days=UNUSED_KEY_DAYS)
    found = False
    for key_id, name, owner, expires, created, used in conn.execute(live):
        if expires is not None and expires <= now:
            continue
        if expires is None:
            found = True
            yield Finding(
                "keys.never_expire",
                Severity.WARNING,
                f"API key {key_id} ({name!r}, {owner}) never expires",
                f"safeboard key revoke {key_id}, and make one with an expiry",
            )
        if (used or created) < unused_before:
            found = True
            yield Finding(
                "keys.unused",
                Severity.WARNING,
                f"API key {key_id} ({name!r}, {owner}) unused for over {UNUSED_KEY_DAYS} days",
                f"safeboard key revoke {key_id}",
            )
    if not found:
        yield Finding("keys", Severity.OK, "every live API key expires and was used lately")


def _agents(conn: sa.Connection, now: datetime) -> Iterator[Finding]:
    rows = conn.execute(
        sa.text(
            "SELECT id, name, hostname, last_seen_at, created_at FROM agents "
            "WHERE revoked_at IS NULL ORDER BY id"
        ).columns(last_seen_at=UtcDateTime(), created_at=UtcDateTime())
    )
    found = False
    for agent_id, name, host, seen, created in rows:
        if (seen or created) < now - SILENT_AGENT:
            found = True
            yield Finding(
                "agents.silent",
                Severity.WARNING,
                f"agent {agent_id} ({name or host}) silent since "
                f"{(seen or created):%Y-%m-%d %H:%M} UTC",
                f"safeboard agent revoke {agent_id}, if the machine is gone",
            )
    if not found:
        yield Finding("agents", Severity.OK, "every agent called within a day")
