"""safeboard.sdk.tbbatch: ``PendingBatch.bodies`` holds each tag's points in file order
(against a plain loop over the points); ``BatchPoster`` posts bodies from two threads at
once (one is sent while the server stores the other), every body is counted once, and a
failure is raised by ``join`` after the other bodies have gone."""

from __future__ import annotations

import json
import threading
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard import wire
from safeboard.client.typed import Client
from safeboard.errors import BadRequest
from safeboard.sdk import tbbatch
from safeboard.sdk.tbbatch import BatchPoster, PendingBatch


class _Receiver:
    """What the poster needs of a client: ``post_metrics``. Each call waits until
    ``together`` calls are in flight at once (a barrier), so a poster that sends one
    body at a time fails here."""

    def __init__(self, together: int, *, refuse: bytes = b"") -> None:
        self.barrier = threading.Barrier(together, timeout=5)
        self.bodies: list[bytes] = []
        self.refuse = refuse
        self._lock = threading.Lock()

    def post_metrics(
        self, run_id: str, body: bytes, *, media_type: str | None = None
    ) -> dict[str, Any]:
        assert (run_id, media_type) == ("run", None)  # a compact body says its own
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


def _unpacked(body: bytes) -> dict[str, tuple[list[int], list[float], list[float]]]:
    assert wire.is_compact(body)  # the import sends compact bodies (12 bytes a point)
    packed = wire.split(body)
    header = json.loads(packed.header)
    columns = wire.compact_columns(packed.data, [(n, s, v) for _, n, s, v in header["metrics"]])
    return {
        metric[0]: (s.tolist(), t.tolist(), v.tolist())
        for metric, (s, t, v) in zip(header["metrics"], columns, strict=True)
    }


@settings(max_examples=60, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.integers(0, 4), st.integers(-3, wire.MAX_STEP + 3), st.floats(-1e3, 1e3)),
        max_size=300,
    ),
    parts=st.integers(1, 4),
    singles=st.integers(0, 5),
)
def test_bodies_hold_each_tags_points_in_file_order(
    points: list[tuple[int, int, float]], parts: int, singles: int
) -> None:
    """Whatever the tags' interleaving: each tag's points in the order of the file, the
    steps out of range left out, a tag whose name the server refuses left out, points
    added one by one merged by offset; against a plain loop over the points."""
    keys = {"loss": 0, "acc": 1, "lr": 2, "bad\x00key": 3, "grad": 4}
    names = {i: k for k, i in keys.items()}
    batch = PendingBatch(0, keys)
    rows = [(10 * n, tag, step, float(n), value) for n, (tag, step, value) in enumerate(points)]
    bulk, one = rows[singles:], rows[:singles]  # the first ones come one by one, added last
    for chunk in np.array_split(np.arange(len(bulk)), parts):
        taken = [bulk[i] for i in chunk]
        columns = [np.array([r[c] for r in taken]) for c in range(5)]
        batch.add(
            columns[0].astype(np.int64), columns[1].astype(np.int64),
            columns[2].astype(np.int64), columns[3].astype(np.float64),
            columns[4].astype(np.float64),
        )  # fmt: skip
    for offset, tag, step, time, value in one:
        batch.add_point(offset, names[tag], step, time, value)
    expected: dict[str, tuple[list[int], list[float], list[float]]] = {}
    for _, tag, step, time, value in sorted(rows, key=lambda r: r[0]):
        if 0 <= step <= wire.MAX_STEP and tag != 3:
            for column, item in zip(expected.setdefault(names[tag], ([], [], [])),
                                    (step, time, value), strict=True):  # fmt: skip
                column.append(item)
    bodies = batch.bodies("run", "events.out", 10)
    assert len(bodies) == (1 if expected else 0)
    for _, body, count in bodies:
        assert _unpacked(body) == expected
        assert count == sum(len(c[0]) for c in expected.values())


def test_bodies_past_max_points_are_sent_in_parts_with_their_own_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tbbatch, "MAX_POINTS", 7)
    batch = PendingBatch(0, {"a": 0, "b": 1})
    n = 20
    steps = np.arange(n, dtype=np.int64)
    batch.add(steps, steps % 2, steps, np.zeros(n), steps.astype(np.float64))
    bodies = batch.bodies("run", "events.out", 99)
    assert [count for _, _, count in bodies] == [7, 7, 6]
    assert len({batch_id for batch_id, _, _ in bodies}) == 3
    got = [_unpacked(body) for _, body, _ in bodies]
    assert [step for part in got for step in part["a"][0]] == list(range(0, n, 2))
    assert [step for part in got for step in part["b"][0]] == list(range(1, n, 2))


def test_bodies_with_more_tags_than_16_bits_keep_them_apart() -> None:
    keys = {f"t{i}": i for i in range(70_000)}
    batch = PendingBatch(0, keys)
    ids = np.array([69_999, 3, 65_536, 3, 69_999], dtype=np.int64)
    batch.add(np.arange(5, dtype=np.int64), ids, np.arange(5, dtype=np.int64), np.zeros(5),
              np.arange(5, dtype=np.float64))  # fmt: skip
    ((_, body, count),) = batch.bodies("run", "events.out", 5)
    assert count == 5
    got = _unpacked(body)
    assert {k: v[0] for k, v in got.items()} == {"t3": [1, 3], "t65536": [2], "t69999": [0, 4]}
