"""Login throttling (S5) on SQLite and PostgreSQL: lock-out after the maximum number of
failures, doubling up to a cap, decay, reset on success, concurrent counting, keys, and
through the app: parallel correct sign-ins, loopback and IPv6 /64 budgets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from safeboard.accounts.models import LoginThrottleRow
from safeboard.accounts.ratelimit import Attempt, LoginThrottle, throttle_keys
from safeboard.settings import AuthSettings, Settings
from safeboard.storage import BEGIN_IMMEDIATE, create_engine
from tests.integration.identity_world import PASSWORD, World, build_world
from tests.support.schema import migrate

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
KEYS = throttle_keys("Alice", "192.0.2.10")
USER, ADDR = KEYS


@pytest.fixture
def db(engine: Engine) -> Engine:
    migrate(engine)
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


def _begin(db: Engine, throttle: LoginThrottle, now: datetime) -> Attempt:
    with db.begin() as conn:
        return throttle.begin_attempt(conn, KEYS, now)


def _succeeded(db: Engine, throttle: LoginThrottle, attempt: Attempt) -> None:
    with db.begin() as conn:
        throttle.succeeded(conn, attempt)


def test_attempts_in_flight_are_taken_back_when_they_succeed(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    attempts = [_begin(db, throttle, T0) for _ in range(5)]  # all counted, none checked yet
    assert [a.wait for a in attempts] == [None] * 5
    assert _begin(db, throttle, T0).wait == 30  # a sixth at once waits: the burst bound
    for attempt in attempts:
        _succeeded(db, throttle, attempt)
    assert _failures(db, USER) is None
    assert _failures(db, ADDR) == 0
    assert _retry_after(db, throttle, T0) is None


def test_a_right_attempt_after_a_lock_leaves_no_lock_behind(db: Engine) -> None:
    throttle = LoginThrottle(AuthSettings())
    for i in range(5):  # five wrong names from one address: it is locked for 30 s
        _fail(db, throttle, T0, [f"user:guess{i}", ADDR])
    assert _retry_after(db, throttle, T0, [ADDR]) == 30
    later = T0 + timedelta(seconds=30)
    attempt = _begin(db, throttle, later)
    assert attempt.wait is None
    assert _retry_after(db, throttle, later, [ADDR]) == 60  # held while it is checked
    _succeeded(db, throttle, attempt)
    assert _retry_after(db, throttle, later, [ADDR]) is None
    assert _failures(db, ADDR) == 5  # the address keeps its earlier failures
    assert _fail(db, throttle, later, [ADDR]) == 60  # and the next failure locks again


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
        ("a", "127.0.0.1", ["user:a", "addr:loopback"]),
        ("a", "127.255.3.9", ["user:a", "addr:loopback"]),
        ("a", "::1", ["user:a", "addr:loopback"]),
        ("a", "::ffff:127.0.0.2", ["user:a", "addr:loopback"]),
    ],
)
def test_throttle_keys(username: str, address: str, expected: list[str]) -> None:
    assert throttle_keys(username, address) == expected


# Through the app: parallel sign-ins, and which addresses share a budget.


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("alice")
    yield built
    await built.close()


async def _sign_in(world: World, address: str, username: str, password: str) -> int:
    response = await world.client(address).post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status_code


@pytest.mark.anyio
async def test_parallel_correct_sign_ins_do_not_lock_the_account(world: World) -> None:
    """Each attempt is counted while its password is checked; a success takes that count
    back, lock included, so five at once (a browser and four scripts) lock nothing."""
    for _ in range(3):
        statuses = await asyncio.gather(
            *(_sign_in(world, "192.0.2.20", "alice", PASSWORD) for _ in range(5))
        )
        assert statuses == [200] * 5
        assert await _sign_in(world, "192.0.2.20", "alice", PASSWORD) == 200
    assert _failures(world.services.engine, "user:alice") is None
    assert _failures(world.services.engine, "addr:192.0.2.20") == 0


@pytest.mark.anyio
async def test_every_loopback_address_shares_one_budget(world: World) -> None:
    """On a loopback server every client is this machine: 127.0.0.2, 127.0.0.3, ... are not
    fresh budgets for a local guesser."""
    assert world.settings.server.host == "127.0.0.1"
    for host in range(2, 7):
        assert await _sign_in(world, f"127.0.0.{host}", f"guess{host}", "wrong wrong") == 401
    for host in range(7, 10):
        assert await _sign_in(world, f"127.0.0.{host}", "alice", PASSWORD) == 429
    assert await _sign_in(world, "::1", "alice", PASSWORD) == 429
    assert await _sign_in(world, "192.0.2.30", "alice", PASSWORD) == 200


@pytest.mark.anyio
async def test_two_addresses_of_one_ipv6_64_share_one_budget(world: World) -> None:
    for host in range(1, 6):
        assert await _sign_in(world, f"2001:db8:7:1::{host}", f"guess{host}", "wrong") == 401
    assert await _sign_in(world, "2001:db8:7:1:ffff:ffff:ffff:fffe", "alice", PASSWORD) == 429
    assert await _sign_in(world, "2001:db8:7:2::1", "alice", PASSWORD) == 200
