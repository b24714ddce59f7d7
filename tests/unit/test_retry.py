"""One retry policy: exponential, capped, jittered, honouring Retry-After, and deciding
what to retry by class (never by message)."""

from __future__ import annotations

import pytest

from safeboard.client.retry import RetryPolicy
from safeboard.errors import (
    BadRequest,
    ChecksumMismatch,
    RateLimited,
    SafeboardError,
    ServiceUnavailable,
)


def test_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000) == 4.0  # no overflow


def test_jitter_stays_between_half_and_the_whole() -> None:
    low = RetryPolicy(base=1.0, cap=8.0, random=lambda: 0.0)
    high = RetryPolicy(base=1.0, cap=8.0, random=lambda: 0.999999)
    assert low.delay(3) == 2.0
    assert 3.99 < high.delay(3) <= 4.0


def test_a_rate_limit_waits_at_least_what_the_server_asked() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0, jitter=False)
    assert policy.delay(1, RateLimited("slow down", retry_after=30)) == 30.0


def test_call_retries_transient_failures_then_succeeds() -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=5, jitter=False, sleep=slept.append)
    answers: list[BaseException | str] = [ServiceUnavailable("down"), RateLimited("x"), "ok"]

    def fn() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert policy.call(fn) == "ok"
    assert slept == [0.5, 1.0]


@pytest.mark.parametrize(
    "error",
    [BadRequest("no"), ChecksumMismatch("sha256 says ServiceUnavailable"), SafeboardError("x")],
)
def test_other_errors_are_raised_at_once_whatever_their_message(error: SafeboardError) -> None:
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append)

    def fn() -> None:
        raise error

    with pytest.raises(type(error)):
        policy.call(fn)
    assert slept == []


def test_gives_up_after_the_attempts() -> None:
    calls: list[int] = []
    policy = RetryPolicy(attempts=3, sleep=lambda _: None)

    def fn() -> None:
        calls.append(1)
        raise ServiceUnavailable("down")

    with pytest.raises(ServiceUnavailable):
        policy.call(fn)
    assert len(calls) == 3


def test_a_503_with_retry_after_waits_at_least_that_capped_with_jitter() -> None:
    """Every ServiceUnavailable that says when to come back (a database busy or down, a
    full disk) is honoured like a rate limit (issue 13), capped by retry_after_cap."""
    busy = ServiceUnavailable("busy", headers={"Retry-After": "4"})
    exact = RetryPolicy(base=0.1, cap=1.0, jitter=False)
    assert exact.delay(1, busy) == 4.0
    assert RetryPolicy(base=0.1, cap=1.0, random=lambda: 0.0).delay(1, busy) == 4.0
    assert 4.0 < RetryPolicy(base=0.1, cap=1.0, random=lambda: 0.999).delay(1, busy) <= 4.8
    assert RetryPolicy(jitter=False, retry_after_cap=2.0).delay(1, busy) == 2.0
    assert exact.delay(1, ServiceUnavailable("down")) == 0.1  # nothing asked: the backoff
    assert RetryPolicy(base=1.0, cap=30.0, jitter=False).delay(4, busy) == 8.0  # it persists
