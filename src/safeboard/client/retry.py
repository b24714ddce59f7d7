"""One retry and backoff policy for every client loop (CLI, downloads, and the SDK's
sender and uploads): exponential with full jitter, capped; an answer that says when to come
back (``RateLimited``, or any ``ServiceUnavailable`` with ``Retry-After``: a database busy
or down, a full disk, a write queue full) waits at least that long, capped at
``retry_after_cap``, plus up to a fifth more at random so that clients told the same
delay do not all come back at once. Which failures are worth another try is decided by
class (transport failures and 5xx come back as ``ServiceUnavailable``), never by message."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from safeboard.errors import RateLimited, SafeboardError, ServerUnreachable, ServiceUnavailable

__all__ = ["DEFAULT_POLICY", "INTERACTIVE_POLICY", "NO_RETRY", "RetryPolicy", "asked_wait"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``policy.call(fn)`` runs ``fn`` until it succeeds, raises an error not in
    ``retryable`` (or one in ``final``, which wins), or has failed ``attempts`` times;
    between tries it sleeps ``delay(failures, error)`` seconds."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 15.0
    jitter: bool = True
    retry_after_cap: float = 300.0
    retryable: tuple[type[SafeboardError], ...] = (ServiceUnavailable, RateLimited)
    final: tuple[type[SafeboardError], ...] = ()
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def should_retry(self, error: BaseException) -> bool:
        return isinstance(error, self.retryable) and not isinstance(error, self.final)

    def delay(self, failures: int, error: BaseException | None = None) -> float:
        """Seconds to wait after ``failures`` (>= 1) failures in a row: up to
        ``base * 2**(failures-1)``, never more than ``cap``; with jitter a random part of
        that (so that many clients do not come back at once). A rate limit waits at least
        what the server asked for (``Retry-After``), even past the cap, up to
        ``retry_after_cap``."""
        ceiling = min(self.cap, self.base * 2 ** max(0, min(failures - 1, 62)))
        wait = ceiling * (0.5 + float(self.random()) / 2) if self.jitter else ceiling
        asked = asked_wait(error) if error is not None else None
        if asked is not None:
            floor = min(asked, self.retry_after_cap)
            wait = max(wait, floor * (1 + float(self.random()) / 5) if self.jitter else floor)
        return float(wait)

    def call(self, fn: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return fn()
            except SafeboardError as exc:
                failures += 1
                if not self.should_retry(exc) or failures >= self.attempts:
                    raise
                self.sleep(self.delay(failures, exc))


def asked_wait(error: BaseException) -> float | None:
    """The seconds the server asked to wait before the next try (``Retry-After`` on a 429
    or a 503, carried by the error from client.http), or None."""
    if isinstance(error, RateLimited):
        return float(error.retry_after)
    if not isinstance(error, ServiceUnavailable):
        return None
    value = error.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


DEFAULT_POLICY = RetryPolicy()
# A person waiting at a prompt: a server that nobody answers for (refused, timed out) is
# said at once; a proxy's 502/503 while the server restarts is still tried again.
INTERACTIVE_POLICY = RetryPolicy(attempts=4, final=(ServerUnreachable,))
NO_RETRY = RetryPolicy(attempts=1)
