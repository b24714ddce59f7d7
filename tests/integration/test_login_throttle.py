"""Login throttling (S5) on SQLite and PostgreSQL: lock-out after the maximum number of
failures, doubling up to a cap, decay, reset on success, concurrent counting, and keys."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from safeboard.auth.models import LoginThrottleRow
from safeboard.auth.ratelimit import LoginThrottle, throttle_keys
from safeboard.settings import AuthSettings
from safeboard.storage import BEGIN_IMMEDIATE, create_engine, upgrade

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
KEYS = throttle_keys("Alice", "192.0.2.10")
USER, ADDR = KEYS


@pytest.fixture
def db(engine: Engine) -> Engine:
    upgrade(engine)
    return engine


def _fail(
    db: Engine, throttle: LoginThrottle, now: datetime, keys: Sequence[str] = KEYS
) -> int | None:
    with db.begin() as conn:
        return throttle.record_failure(conn, keys, now)


def _retry_after(
    db: Engine, throttle: LoginThrottle, now: datetime, keys: Sequence[str] = KEYS
) -> int | None:
    with db.begin() as conn:
        return throttle.retry_after(conn, keys, now)


def _failures(db: Engine, key: str) -> int | None:
    with db.connect() as conn:
        return conn.scalar(sa.select(LoginThrottleRow.failures).where(LoginThrottleRow.key == key))


def test_no_lock_before_the_maximum(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for i in range(4):
        assert _fail(db, throttle, T0 + timedelta(seconds=i)) is None
    assert _retry_after(db, throttle, T0 + timedelta(seconds=5)) is None
    assert _failures(db, USER) == 4
    assert _failures(db, ADDR) == 4


def test_lock_after_the_maximum_with_retry_after(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())  # 5 failures, then 30 s
    for _ in range(4):
        _fail(db, throttle, T0)
    assert _fail(db, throttle, T0) == 30
    assert _retry_after(db, throttle, T0 + timedelta(seconds=10)) == 20
    assert _retry_after(db, throttle, T0 + timedelta(seconds=29, milliseconds=500)) == 1
    assert _retry_after(db, throttle, T0 + timedelta(seconds=30)) is None
    assert _retry_after(db, throttle, T0, [USER]) == 30  # each key is locked on its own
    assert _retry_after(db, throttle, T0, ["user:someone-else"]) is None


def test_lock_doubles_with_each_further_failure(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for _ in range(4):
        _fail(db, throttle, T0)
    now = T0
    for expected in (30, 60, 120, 240):
        assert _fail(db, throttle, now) == expected
        now += timedelta(seconds=expected)  # the next try comes when the lock ends


def test_lock_is_capped(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings(login_backoff_seconds=30, login_backoff_max_seconds=100))
    results = [_fail(db, throttle, T0) for _ in range(8)]
    assert results == [None, None, None, None, 30, 60, 100, 100]
    assert throttle.lock_seconds(10_000) == 100


def test_counter_starts_again_after_a_quiet_hour(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for _ in range(4):
        _fail(db, throttle, T0)
    later = T0 + timedelta(hours=1, seconds=1)
    assert _fail(db, throttle, later) is None
    assert _failures(db, USER) == 1
    for _ in range(3):
        assert _fail(db, throttle, later) is None
    assert _fail(db, throttle, later) == 30


def test_counter_within_the_hour_keeps_counting(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for _ in range(4):
        _fail(db, throttle, T0)
    assert _fail(db, throttle, T0 + timedelta(minutes=59)) == 30


def test_lock_in_force_keeps_the_count(db: Engine) -> None:
    # An hour-long lock must not end with a clean slate: the quiet hour starts when it ends.
    throttle = LoginThrottle(
        AuthSettings(login_backoff_seconds=3600, login_backoff_max_seconds=7200)
    )
    for _ in range(5):
        _fail(db, throttle, T0)
    assert _retry_after(db, throttle, T0) == 3600
    assert _fail(db, throttle, T0 + timedelta(hours=1, seconds=1)) == 7200
    assert _failures(db, USER) == 6


def test_success_clears_the_user_key_but_not_the_address(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for _ in range(3):
        _fail(db, throttle, T0)
    with db.begin() as conn:
        throttle.record_success(conn, USER)
    assert _failures(db, USER) is None
    assert _failures(db, ADDR) == 3
    _fail(db, throttle, T0)
    assert _fail(db, throttle, T0) == 30  # the address reached 5
    assert _retry_after(db, throttle, T0, [USER]) is None
    assert _retry_after(db, throttle, T0, [ADDR]) == 30


def test_rolled_back_failure_is_not_counted(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    with db.connect() as conn, conn.begin() as tx:
        throttle.record_failure(conn, KEYS, T0)
        tx.rollback()
    assert _failures(db, USER) is None


def test_lock_holds_across_engines(db: Engine) -> None:
    """Another process (a restart, a replica) sees the lock."""
    for _ in range(5):
        _fail(db, LoginThrottle(AuthSettings()), T0)
    other = create_engine(db.url.render_as_string(hide_password=False))
    try:
        assert _retry_after(other, LoginThrottle(AuthSettings()), T0) == 30
    finally:
        other.dispose()


def test_concurrent_failures_are_all_counted(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    threads_n, per_thread = 6, 5
    shared = throttle_keys("bob", "198.51.100.7")
    start = threading.Barrier(threads_n)

    def worker(index: int) -> None:
        keys = [*shared, f"user:own-{index}"]
        start.wait(timeout=30)
        for attempt in range(per_thread):
            if attempt % 2:  # as a sign-in does: read the lock, then record
                with (
                    db.connect().execution_options(**{BEGIN_IMMEDIATE: True}) as conn,
                    conn.begin(),
                ):
                    throttle.retry_after(conn, keys, T0)
                    throttle.record_failure(conn, keys, T0)
            else:
                _fail(db, throttle, T0, keys)

    with ThreadPoolExecutor(max_workers=threads_n) as pool:
        for done in [pool.submit(worker, i) for i in range(threads_n)]:
            done.result(timeout=60)  # re-raises a worker's error here
    for key in shared:
        assert _failures(db, key) == threads_n * per_thread
    for index in range(threads_n):
        assert _failures(db, f"user:own-{index}") == per_thread
    assert _retry_after(db, throttle, T0, shared) == 3600  # 30 failures: at the cap


def test_ipv6_addresses_are_grouped_by_64(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for host in range(5):  # one attacker rotating through its /64
        keys = throttle_keys(f"user{host}", f"2001:db8:1:2::{host + 1:x}")
        result = _fail(db, throttle, T0, keys)
    assert result == 30
    assert _failures(db, "addr:2001:db8:1:2::/64") == 5
    assert _retry_after(db, throttle, T0, ["addr:2001:db8:1:3::/64"]) is None


def test_long_user_names_fit_the_key_column(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    keys = throttle_keys("x" * 5000, "192.0.2.1")
    assert all(len(key) <= 200 for key in keys)
    assert keys != throttle_keys("x" * 4999, "192.0.2.1")
    for _ in range(5):
        result = _fail(db, throttle, T0, keys)
    assert result == 30


@pytest.mark.parametrize(
    ("username", "address", "expected"),
    [
        ("Alice", "192.0.2.10", ["user:alice", "addr:192.0.2.10"]),
        (" \uff21\uff4c\uff49\uff43\uff45 ", "192.0.2.10", ["user:alice", "addr:192.0.2.10"]),
        ("Stra\u00dfe", "::ffff:192.0.2.10", ["user:strasse", "addr:192.0.2.10"]),
        ("a", "2001:DB8:0:0:ffff:1:2:3", ["user:a", "addr:2001:db8::/64"]),
        ("a", "fe80::1%eth0", ["user:a", "addr:fe80::/64"]),
        ("a", "testclient", ["user:a", "addr:testclient"]),
    ],
)
def test_throttle_keys(username: str, address: str, expected: list[str]) -> None:
    assert throttle_keys(username, address) == expected
