"""The C packer (``sdk/_pack.c``): what run.log() queued becomes the same batches, bit for
bit, whether C or Python packs it; C takes the usual points, and hands every other kind
to Python's path, which says what it drops."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard import wire
from safeboard.metrics.schemas import PackedHeader
from safeboard.sdk import _pack, batches
from safeboard.sdk.batches import Packer


def test_the_library_is_built_from_this_source() -> None:
    assert batches.PACK is not None, "the C packer is not built: python3 hatch_build.py"
    source = Path(batches.__file__).with_name("_pack.c")
    assert batches.PACK.source_digest == hashlib.sha256(source.read_bytes()).hexdigest(), (
        "the C packer is older than _pack.c: rebuild it (python3 hatch_build.py)"
    )


def _stored(packed: list[batches.Batch]) -> list[tuple[int, dict[str, list[list[int]]]]]:
    """Each batch's point count and its keys' steps, times and values as the server reads
    them, the floats as their bits (NaN payloads, -0.0)."""
    seen = []
    for batch in packed:
        body = wire.split(batch.body)
        header = PackedHeader.model_validate_json(body.header)
        arrays = wire.columns(body.data, [n for _, n in header.metrics])
        seen.append((batch.points, {
            key: [steps.tolist(), times.view("<u8").tolist(), values.view("<u8").tolist()]
            for (key, _), (steps, times, values) in zip(header.metrics, arrays, strict=True)
        }))  # fmt: skip
    return seen


def _packed(flat: list[Any], slice_points: int, *, native: bool) -> list[Any]:
    before = batches.PACK
    batches.PACK = batches.PACK if native else None
    try:
        packer, queue = Packer(), deque(flat)
        while queue:
            packer.take(queue, slice_points)
        return _stored(packer.batches())
    finally:
        batches.PACK = before


KEYS = ["loss", "acc", "lr"]
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),  # 2**53 + 1 and on: rounded
    st.floats().map(np.float64),  # a float subclass: the usual kind too
)
unusual_values = st.sampled_from(
    [None, True, "1.5", "x", [1.0], np.int64(3), np.float32(0.1), 1 + 2j, 2**1030]
)
unusual_steps = st.sampled_from([-1, 2**62 + 1, 2**64, True, 3.0, np.int64(4), None, "5"])


@st.composite
def queued(draw: st.DrawFn) -> list[Any]:
    """What run.log() queues: mostly the usual points (the same keys, numbers), sometimes
    not (another key set or order, a value or step the server refuses, a dict subclass)."""
    count = draw(st.integers(1, 150))
    values = draw(st.lists(numbers, min_size=3 * count, max_size=3 * count))
    # How often a point is unusual: never, seldom (most slices all usual), often.
    spread = draw(st.sampled_from([0, 1_000, 200, 9]))
    odds = draw(st.lists(st.integers(0, spread), min_size=count, max_size=count))
    flat: list[Any] = []
    for step, odd in enumerate(odds):
        data: dict[Any, Any] = dict(zip(KEYS, values[3 * step : 3 * step + 3], strict=True))
        data["step"] = step + 0.5  # one value no other point has: a point misplaced shows
        if odd == 1:
            data[draw(st.sampled_from(KEYS))] = draw(unusual_values)
        elif odd == 2:
            data = dict(reversed(data.items()))
        elif odd == 3:
            data["extra"] = 1.0
        elif odd == 4:
            data = {"bad key!": 1.0} if draw(st.booleans()) else {}
        elif odd == 5:
            data = {1: 2.0}
        elif odd == 6:
            data = type("Sub", (dict,), {})(data)
        at = draw(unusual_steps) if odd == 7 else step
        moment = 5 if odd == 8 else 1.7e9 + step / 8
        flat += [at, moment, data]
    return flat


@settings(max_examples=60)  # each example packs up to 150 points twice (CI time)
@given(queued(), st.sampled_from([1, 7, 128, 4_096]))
def test_c_and_python_pack_the_same_batches(flat: list[Any], slice_points: int) -> None:
    assert _packed(flat, slice_points, native=True) == _packed(flat, slice_points, native=False)


def _usual(points: int, first: int = 0) -> list[Any]:
    flat: list[Any] = []
    for step in range(first, first + points):
        flat += [step, 1.7e9 + step, {key: step * 0.5 + i for i, key in enumerate(KEYS)}]
    return flat


def test_usual_points_are_columns_made_in_c() -> None:
    flat, rows = _pack.take(deque(_usual(5, first=7)), 5)
    assert flat == _usual(5, first=7)
    keys, steps, times, values = rows
    assert keys == KEYS
    assert np.frombuffer(steps, np.int64).tolist() == [7, 8, 9, 10, 11]
    assert np.frombuffer(times, np.float64).tolist() == [1.7e9 + s for s in range(7, 12)]
    table = np.frombuffer(values, np.float64).reshape(len(KEYS), 5)  # key-major
    assert table[1].tolist() == [s * 0.5 + 1 for s in range(7, 12)]


@pytest.mark.parametrize(
    ("where", "odd"),
    [
        (0, True), (0, -1), (0, 2**62 + 1), (0, 2**64), (0, 3.0), (0, np.int64(3)),
        (1, 5), (1, None),
        (2, {}), (2, {"loss": 1.0, "acc": 2.0}), (2, {"acc": 1.0, "loss": 2.0, "lr": 3.0}),
        (2, {1: 1.0, 2: 2.0, 3: 3.0}), (2, {"loss": None, "acc": 1.0, "lr": 1.0}),
        (2, {"loss": True, "acc": 1.0, "lr": 1.0}), (2, {"loss": 2**1030, "acc": 1.0, "lr": 1.0}),
        (2, {"loss": "1", "acc": 1.0, "lr": 1.0}),
        (2, type("Sub", (dict,), {})(loss=1.0, acc=1.0, lr=1.0)),
    ],
)  # fmt: skip
def test_any_unusual_point_is_left_to_python(where: int, odd: Any) -> None:
    flat = _usual(4)
    flat[3 * 2 + where] = odd  # the third point
    popped, rows = _pack.take(deque(flat), 4)
    assert rows is None
    assert popped == flat  # every item handed over, in order


def test_take_pops_whole_points_and_no_more_than_asked() -> None:
    queue = deque(_usual(4))
    flat, rows = _pack.take(queue, 3)
    assert flat == _usual(3)
    assert rows is not None
    assert list(queue) == _usual(1, first=3)
    flat, rows = _pack.take(queue, 10)  # fewer queued than asked: what there is
    assert flat == _usual(1, first=3)
    assert rows is not None
    assert not queue
    assert _pack.take(queue, 10) == ([], None)
    queue.extend([1, 2.0])  # half a point (log() queues three at once): left alone
    assert _pack.take(queue, 1) == ([], None)
    assert list(queue) == [1, 2.0]


def test_a_name_not_a_str_and_an_int_past_a_float_are_dropped_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each dropped alone and said once, however packed: a name that is not a str made
    Python's path raise in the sender before (the slice's points were lost)."""
    flat = [0, 1.0, {7: 1.0, "kept": 0.5}, 1, 2.0, {"kept": 2**1100}, 2, 3.0, {"kept": 2.5}]
    for native in (True, False):
        ((points, stored),) = _packed(flat, 128, native=native)
        assert points == 2
        assert list(stored) == ["kept"]
        assert stored["kept"][0] == [0, 2]
        assert np.array(stored["kept"][2], np.uint64).view(np.float64).tolist() == [0.5, 2.5]
    said = capsys.readouterr().err
    assert "not logging metric '7': a metric's name is a str, not int" in said
    assert "not logging a value of metric 'kept': int too large for a float" in said
