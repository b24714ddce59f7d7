"""Queries on the audit log: append inside the caller's transaction, list, verify.

Returns plain :class:`~safeboard.audit.events.AuditEntry` objects; never commits. Callers
pass only non-secret metadata in ``detail`` (keys named like secrets raise ValueError).

**Keeping the chain linear.** Two transactions appending at once must not both link to
the same previous entry. :func:`append` therefore holds a lock that serialises appenders
*before* it reads the previous hash, and reads it after inserting its own row:

- PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, held until commit or rollback. The
  next appender waits for it, and under READ COMMITTED (required, and checked: an older
  snapshot could miss the entry committed just before) then sees that entry.
- SQLite: the INSERT comes first, so the transaction holds SQLite's single write lock
  before anything is read; the hash is filled in by an UPDATE in the same transaction.
  A transaction that read before appending and whose snapshot went stale gets "database
  is locked" from SQLite instead of a fork (open such transactions with BEGIN_IMMEDIATE).

Ids come from the database and are part of the hash, so a renumbered row shows as edited.

**What verify detects, and its limit.** An edited row (its hash no longer matches), a row
inserted between two others (the next row links past it) and a deleted row (the next row
links to a hash no row has). A plain hash chain cannot detect the removal of the newest
rows, or a rewrite of every row from some point to the end with fresh hashes, because
nothing outside the database remembers the end of the chain. ``safeboard audit verify``
therefore prints the head (last id and hash): record it elsewhere (a ticket, a log
shipper, a signed note) and compare later; the recorded entry must still be there with
the same hash.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Text,
    func,
    insert,
    inspect,
    select,
    type_coerce,
    update,
)

from safeboard.audit.events import (
    GENESIS_HASH,
    AuditAction,
    AuditEntry,
    Problem,
    ProblemKind,
    VerifyReport,
    chain_hash,
    check_fields,
    encode_detail,
)
from safeboard.audit.models import AuditRow

__all__ = [
    "MAX_LIMIT",
    "append",
    "append_unless_recent",
    "entries",
    "has_log",
    "last_for",
    "verify",
]

MAX_LIMIT = 10_000
# Key of the PostgreSQL advisory lock that serialises appenders ("sb_audit" as an int64).
_APPEND_LOCK_KEY = int.from_bytes(b"sb_audit", "big") - 2**63
_VERIFY_BATCH = 1000
_WINDOW = 1000  # how far back verify looks for the entry a broken link points to

_COLUMNS = (
    AuditRow.id,
    AuditRow.at,
    AuditRow.action,
    AuditRow.actor,
    AuditRow.target,
    AuditRow.outcome,
    AuditRow.address,
    AuditRow.detail,
    AuditRow.prev_hash,
    AuditRow.hash,
)


def append(
    conn: Connection,
    *,
    action: AuditAction,
    actor: str,
    target: str = "",
    outcome: str = "ok",
    address: str = "",
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction: it commits or rolls back with the change
    it records. ``detail`` is non-secret metadata only. ValueError or TypeError for input
    the log refuses; RuntimeError on PostgreSQL outside READ COMMITTED."""
    action = AuditAction(action)
    check_fields(action=action.value, actor=actor, target=target, outcome=outcome, address=address)
    detail_text = encode_detail(detail)
    at = datetime.now(UTC) if at is None else at
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
    at = at.astimezone(UTC)
    values: dict[str, Any] = {"at": at, "action": action.value, "actor": actor, "target": target}
    values |= {"outcome": outcome, "address": address, "detail": detail_text}

    _lock_for_append(conn)
    # Unique (the column is) and never a valid hash; replaced below, in this transaction.
    pending = "pending-" + secrets.token_hex(28)
    inserted = conn.execute(
        insert(AuditRow)
        .values({**values, "prev_hash": pending, "hash": pending})
        .returning(AuditRow.id)
    )
    row_id: int = inserted.scalar_one()
    prev_hash = conn.execute(
        select(AuditRow.hash).where(AuditRow.id < row_id).order_by(AuditRow.id.desc()).limit(1)
    ).scalar_one_or_none()
    prev_hash = prev_hash or GENESIS_HASH
    digest = chain_hash(prev_hash=prev_hash, id=row_id, **values)
    conn.execute(
        update(AuditRow).where(AuditRow.id == row_id).values(prev_hash=prev_hash, hash=digest)
    )
    detail_out = json.loads(detail_text)
    return AuditEntry(
        row_id, at, action.value, actor, target, outcome, address, detail_out, prev_hash, digest
    )


def append_unless_recent(
    conn: Connection,
    *,
    within: timedelta,
    action: AuditAction,
    actor: str,
    target: str,
    address: str = "",
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry | None:
    """:func:`append`, unless an entry with the same action, actor, target and address was
    appended less than ``within`` before ``at``: then nothing (None). Repeats are coalesced,
    never rewritten: the log stays append-only and chained. The check runs under the append
    lock (PostgreSQL's advisory lock; on SQLite the caller's BEGIN IMMEDIATE), so two
    requests on two replicas at once make one entry, not two."""
    at = _aware(datetime.now(UTC) if at is None else at)
    if within > timedelta(0):
        _lock_for_append(conn)
        recent = conn.execute(
            select(AuditRow.id)
            .where(AuditRow.action == AuditAction(action).value, AuditRow.target == target,
                   AuditRow.actor == actor, AuditRow.address == address,
                   AuditRow.at > at - within)
            .limit(1)
        ).first()  # fmt: skip
        if recent is not None:
            return None
    return append(
        conn, action=action, actor=actor, target=target, address=address, detail=detail, at=at
    )


def _lock_for_append(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return  # SQLite: the INSERT that follows takes the database's write lock
    level = conn.execute(
        select(
            func.pg_advisory_xact_lock(_APPEND_LOCK_KEY),
            func.current_setting("transaction_isolation"),
        )
    ).one()[1]
    if level != "read committed":
        raise RuntimeError(
            f"audit append needs READ COMMITTED isolation, not {level}: an older snapshot "
            "could miss the entry committed just before and fork the chain"
        )


def entries(
    conn: Connection,
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
    """Entries with ``since <= at < until``, of ``action``, with id above ``after_id`` and
    below ``before_id`` (for paging either way), whose actor contains ``actor_contains``,
    oldest first or ``newest_first``; at most ``limit`` (1 to MAX_LIMIT)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    query = select(*_COLUMNS)
    if since is not None:
        query = query.where(AuditRow.at >= _aware(since))
    if until is not None:
        query = query.where(AuditRow.at < _aware(until))
    if action is not None:
        query = query.where(AuditRow.action == str(action))
    if after_id is not None:
        query = query.where(AuditRow.id > after_id)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    if actor_contains:
        query = query.where(AuditRow.actor.contains(actor_contains, autoescape=True))
    order = AuditRow.id.desc() if newest_first else AuditRow.id.asc()
    rows = conn.execute(query.order_by(order).limit(limit))
    return [_entry(row._mapping) for row in rows]


def has_log(conn: Connection) -> bool:
    """Whether the schema has the audit log table (migrations have run)."""
    return inspect(conn).has_table(AuditRow.__tablename__)


def verify(conn: Connection) -> VerifyReport:
    """Walk the whole chain in id order, recomputing every hash and checking every link."""
    walk = _ChainWalk()
    columns: list[Any] = list(_COLUMNS)
    if conn.dialect.name == "sqlite":  # read ``at`` as stored: a garbled one is an edit
        columns[1] = type_coerce(AuditRow.at, Text).label("at")
    query = select(*columns).order_by(AuditRow.id.asc())
    for row in conn.execute(query.execution_options(yield_per=_VERIFY_BATCH)):
        values = row._asdict()
        stored_hash = values.pop("hash")
        walk.step(values["id"], values["prev_hash"], stored_hash, _recompute(values))
    return walk.report()


def _recompute(values: dict[str, Any]) -> str:
    """The hash a row's values give, or "" (matching no stored hash) for values that no
    append writes, such as a garbled timestamp or, on SQLite, a number where text goes."""
    at = values["at"]
    try:
        if isinstance(at, str):  # SQLite keeps UTC without an offset
            at = datetime.fromisoformat(at)
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        return chain_hash(**{**values, "at": at})
    except (TypeError, ValueError):
        return ""


class _ChainWalk:
    """Verify's state: the recent entries (id, stored hash) and the problems found."""

    def __init__(self) -> None:
        self.checked = 0
        self.problems: list[Problem] = []
        self.flagged: set[int] = set()
        self.recent: deque[tuple[int, str]] = deque(maxlen=_WINDOW)

    def step(self, row_id: int, prev_hash: str, stored_hash: str, computed: str) -> None:
        self.checked += 1
        if computed != stored_hash:
            self._flag(row_id, "edited")
        expected = self.recent[-1][1] if self.recent else GENESIS_HASH
        if prev_hash != expected:
            self._diagnose_link(row_id, prev_hash)
        self.recent.append((row_id, stored_hash))

    def _diagnose_link(self, row_id: int, prev_hash: str) -> None:
        if not self.recent:  # the first entry should start the chain: older ones are gone
            self._flag(row_id, "deleted/reordered")
            return
        if prev_hash == GENESIS_HASH:  # the chain starts again mid-log
            self._flag(row_id, "broken link")
            return
        hashes = [stored for _, stored in self.recent]
        if prev_hash in hashes:
            skipped = list(self.recent)[hashes.index(prev_hash) + 1 :]
            if any(skipped_id in self.flagged for skipped_id, _ in skipped):
                self._flag(row_id, "deleted/reordered")  # an altered entry moved here
            else:
                for skipped_id, _ in skipped:  # this entry links past them
                    self._flag(skipped_id, "inserted")
            return
        previous_id = self.recent[-1][0]
        # The entry before was altered (its hash too, maybe), or the one linked to is gone.
        self._flag(row_id, "broken link" if previous_id in self.flagged else "deleted/reordered")

    def _flag(self, row_id: int, what: ProblemKind) -> None:
        self.problems.append(Problem(row_id, what))
        self.flagged.add(row_id)

    def report(self) -> VerifyReport:
        head_id, head_hash = self.recent[-1] if self.recent else (None, None)
        return VerifyReport(self.checked, self.problems, head_id, head_hash)


def _entry(row: RowMapping) -> AuditEntry:
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        detail = {"unreadable": "detail is not a JSON object: run safeboard audit verify"}
    return AuditEntry(**{**row, "detail": detail})


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
    return when.astimezone(UTC)


def last_for(conn: Connection, action: str, target: str) -> AuditEntry | None:
    """The newest entry of ``action`` about ``target`` (found through the action index)."""
    query = (
        select(*_COLUMNS)
        .where(AuditRow.action == str(action), AuditRow.target == target)
        .order_by(AuditRow.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return _entry(row._mapping) if row is not None else None
