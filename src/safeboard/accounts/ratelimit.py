"""Login throttling (S5): failed sign-ins counted per user name and per client address
(IPv6 by /64, every loopback address as one). Each attempt counts as a failure while its
password is checked (:meth:`LoginThrottle.begin_attempt`); a success takes it back.

The counters live in the ``login_throttle`` table, so a lock holds across restarts and
replicas. Every function runs inside the caller's transaction and never commits.
Increments are single ``INSERT ... ON CONFLICT DO UPDATE`` statements, so concurrent
failures are all counted on SQLite and PostgreSQL alike.

On SQLite, begin a transaction that reads (:meth:`LoginThrottle.retry_after`) before it
writes with the ``BEGIN_IMMEDIATE`` execution option, or record failures in a
transaction of their own; otherwise a concurrent writer makes it fail with SQLITE_BUSY.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from safeboard.accounts.models import LoginThrottleRow
from safeboard.settings import AuthSettings

__all__ = ["FAILURE_MEMORY", "LOOPBACK", "Attempt", "LoginThrottle", "throttle_keys"]

# A counter starts again from zero after this long without a failure or a lock in force.
FAILURE_MEMORY = timedelta(hours=1)
_IPV6_PREFIX = 64  # one customer's network: rotating addresses inside it does not help
LOOPBACK = "loopback"  # 127.0.0.0/8 and ::1: one machine, however many addresses it uses
_KEY_LENGTH = 200  # LoginThrottleRow.key is String(200)
_MAX_DOUBLINGS = 32  # far past any cap; keeps the shift small

_Row = LoginThrottleRow


def _key(prefix: str, value: str) -> str:
    key = f"{prefix}:{value}"
    if len(key) <= _KEY_LENGTH:
        return key
    return f"{prefix}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def _address_group(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address  # not an IP (say a test client's name): count it as it is
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK
    if isinstance(ip, ipaddress.IPv6Address):
        network = int(ip) >> (128 - _IPV6_PREFIX) << (128 - _IPV6_PREFIX)
        return str(ipaddress.IPv6Network((network, _IPV6_PREFIX)))
    return str(ip)


def throttle_keys(username: str, address: str) -> list[str]:
    """``["user:<case-folded NFKC name>", "addr:<address>"]``; IPv6 addresses by /64, and
    every loopback address (127.0.0.0/8, ::1) as ``addr:loopback``."""
    name = unicodedata.normalize("NFKC", username).strip().casefold()
    return [_key("user", name), _key("addr", _address_group(address))]


@dataclass(frozen=True)
class Attempt:
    """One sign-in attempt that :meth:`LoginThrottle.begin_attempt` counted, or refused."""

    keys: tuple[str, ...] = ()  # the user key first
    wait: int | None = None  # seconds to wait: refused, nothing counted
    # The lock each key got from counting this attempt, for :meth:`LoginThrottle.succeeded`.
    locks: Mapping[str, datetime] = field(default_factory=dict)


class LoginThrottle:
    """Failure counters and exponential lock-outs, with the limits of :class:`AuthSettings`."""

    def __init__(self, settings: AuthSettings) -> None:
        self._max_failures = settings.login_max_failures
        self._backoff = settings.login_backoff_seconds
        self._backoff_max = settings.login_backoff_max_seconds

    def lock_seconds(self, failures: int) -> int:
        """How long ``failures`` consecutive failures lock a key (0: not locked)."""
        if failures < self._max_failures:
            return 0
        doublings = min(failures - self._max_failures, _MAX_DOUBLINGS)
        return min(self._backoff << doublings, self._backoff_max)

    def retry_after(self, conn: Connection, keys: Sequence[str], now: datetime) -> int | None:
        """Whole seconds until every key in ``keys`` is unlocked, or None if none is locked."""
        if not keys:
            return None
        rows = conn.execute(sa.select(_Row.locked_until).where(_Row.key.in_(set(keys))))
        until = [locked for locked in rows.scalars() if locked is not None and locked > now]
        if not until:
            return None
        return math.ceil((max(until) - now).total_seconds())

    def record_failure(self, conn: Connection, keys: Sequence[str], now: datetime) -> int | None:
        """Count one failed sign-in against each key; return the resulting :meth:`retry_after`.

        A counter quiet for :data:`FAILURE_MEMORY` (no failure and no lock in force) starts
        again from zero. From ``login_max_failures`` on, each failure locks the key for
        ``login_backoff_seconds``, doubling per further failure up to the maximum.
        """
        unique = sorted(set(keys))  # one order for every caller: no deadlock between them
        if not unique:
            return None
        self._count(conn, unique, now)
        return self.retry_after(conn, unique, now)

    def _count(self, conn: Connection, unique: Sequence[str], now: datetime) -> dict[str, datetime]:
        """Count one failure against each key; return the locks that this count set."""
        stale = now - FAILURE_MEMORY
        insert = _insert_for(conn).values(
            [{"key": key, "failures": 1, "last_failure_at": now} for key in unique]
        )
        quiet = sa.and_(
            _Row.last_failure_at < stale,
            sa.or_(_Row.locked_until.is_(None), _Row.locked_until < stale),
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[_Row.key],
            set_={
                "failures": sa.case((quiet, 1), else_=_Row.failures + 1),
                "last_failure_at": insert.excluded.last_failure_at,
            },
        ).returning(_Row.key, _Row.failures)
        locks = {}
        for key, failures in conn.execute(upsert).all():
            seconds = self.lock_seconds(failures)
            if seconds:
                locks[key] = now + timedelta(seconds=seconds)
                conn.execute(sa.update(_Row).where(_Row.key == key).values(locked_until=locks[key]))
        return locks

    def record_success(self, conn: Connection, user_key: str) -> None:
        """Forget the failures of ``user_key``; the address key keeps its count."""
        conn.execute(sa.delete(_Row).where(_Row.key == user_key))

    def begin_attempt(self, conn: Connection, keys: Sequence[str], now: datetime) -> Attempt:
        """Check and count one sign-in attempt (``keys``: the user key first) as one step.

        Refused (``wait``, nothing counted) when a key is locked; else the attempt is
        counted as a failure, locks included, until :meth:`succeeded` takes it back.
        Counting before the password is checked means a burst of parallel guesses cannot
        all slip through the check before any of them is counted. The rows are created,
        then locked (PostgreSQL: FOR UPDATE; SQLite: the caller's BEGIN IMMEDIATE holds the
        write lock), so concurrent attempts on the same keys take turns.
        """
        unique = sorted(set(keys))
        rows = [{"key": key, "failures": 0, "last_failure_at": now} for key in unique]
        conn.execute(_insert_for(conn).values(rows).on_conflict_do_nothing())
        self._lock_rows(conn, unique)
        wait = self.retry_after(conn, unique, now)
        if wait is not None:
            return Attempt(tuple(keys), wait)
        return Attempt(tuple(keys), locks=self._count(conn, unique, now))

    @staticmethod
    def _lock_rows(conn: Connection, keys: Sequence[str]) -> None:
        """Lock the rows of ``keys`` in one order for every caller (PostgreSQL; on SQLite the
        BEGIN IMMEDIATE write lock already serialises)."""
        query = sa.select(_Row.key).where(_Row.key.in_(sorted(set(keys)))).order_by(_Row.key)
        conn.execute(query.with_for_update())

    def succeeded(self, conn: Connection, attempt: Attempt) -> None:
        """A counted attempt turned out right: forget the user key's failures (those of
        attempts still in flight too), and take this attempt back from the other keys.

        Taking back is the count and the lock it caused: a key left below the maximum has
        no lock (the lock came from attempts in flight, not failures), and the lock this
        attempt set goes; one set after this one's had ended stays. So parallel right
        sign-ins lock nothing, and a right one after a lock has ended leaves none behind.
        """
        user_key, *others = attempt.keys
        self._lock_rows(conn, attempt.keys)  # in begin_attempt's order: no deadlock with it
        self.record_success(conn, user_key)
        for key in sorted(set(others) - {user_key}):
            ours = attempt.locks.get(key)
            unlock = _Row.failures - 1 < self._max_failures
            if ours is not None:
                unlock = sa.or_(unlock, _Row.locked_until <= ours)
            conn.execute(
                sa.update(_Row)
                .where(_Row.key == key, _Row.failures > 0)
                .values(
                    failures=_Row.failures - 1,
                    locked_until=sa.case((unlock, None), else_=_Row.locked_until),
                )
            )


def _insert_for(conn: Connection) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ``on_conflict_do_update``."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(_Row)
    if name == "sqlite":
        return sqlite.insert(_Row)
    raise NotImplementedError(f"login throttling has no upsert for {name!r}")
