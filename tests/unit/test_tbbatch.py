"""safeboard.sdk.tbbatch.BatchPoster: bodies are posted from two threads at once (one is
sent while the server stores the other), every body is counted once, and a failure is
raised by ``join`` after the other bodies have gone."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from safeboard import wire
from safeboard.client.typed import Client
from safeboard.errors import BadRequest
from safeboard.sdk.tbbatch import BatchPoster


class _Receiver:
    """What the poster needs of a client: ``post_metrics``. Each call waits until
    ``together`` calls are in flight at once (a barrier), so a poster that sends one
    body at a time fails here."""

    def __init__(self, together: int, *, refuse: bytes = b"") -> None:
        self.barrier = threading.Barrier(together, timeout=5)
        self.bodies: list[bytes] = []
        self.refuse = refuse
        self._lock = threading.Lock()

    def post_metrics(self, run_id: str, body: bytes, *, media_type: str) -> dict[str, Any]:
        assert (run_id, media_type) == ("run", wire.MEDIA_TYPE)
        self.barrier.wait()
        with self._lock:
            self.bodies.append(body)
        if body == self.refuse:
            raise BadRequest("refused")
        return {"stored": 1}


def test_two_bodies_are_in_flight_at_once_and_each_counted_once() -> None:
    receiver = _Receiver(2)
    counted: list[int] = []
    poster = BatchPoster(cast(Client, receiver), "run", counted.append)
    for i in range(6):
        poster.post(b"body%d" % i, i)
    poster.join()
    assert sorted(receiver.bodies) == [b"body%d" % i for i in range(6)]
    assert sorted(counted) == list(range(6))


def test_a_failure_is_raised_by_join_after_the_others() -> None:
    receiver = _Receiver(2, refuse=b"body1")
    counted: list[int] = []
    poster = BatchPoster(cast(Client, receiver), "run", counted.append)
    for i in range(4):
        poster.post(b"body%d" % i, 1)
    with pytest.raises(BadRequest):
        poster.join()
    assert sum(counted) <= 3
    poster.join()  # raised once: nothing left
