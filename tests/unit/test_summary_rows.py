"""A batch's summary row: the small-batch path (plain Python) and the numpy path agree
on every input, NaN and infinities included (P9 made the small path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard.metrics import repository
from safeboard.metrics.codec import Series

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
)


def _series(steps: list[int], values: list[float]) -> Series:
    times = np.arange(len(steps), dtype=np.float64) + 1000.0
    return Series(np.array(steps, dtype=np.int64), times, np.array(values, dtype=np.float64))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_small_and_numpy_paths_agree(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 40))
    steps = data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    values = data.draw(st.lists(_values, min_size=n, max_size=n))
    series = _series(steps, values)
    small = repository._summary_row("r", "k", series)
    old = repository._SMALL
    repository._SMALL = 0
    try:
        large = repository._summary_row("r", "k", series)
    finally:
        repository._SMALL = old
    assert small.keys() == large.keys()
    for name in small:
        assert _same(small[name], large[name]), (name, small[name], large[name])


def test_last_point_is_the_later_of_a_tie_and_nan_is_ignored() -> None:
    row = repository._summary_row("r", "k", _series([3, 7, 7, 1], [math.nan, 2.0, -1.0, 9.0]))
    assert row["last_step"] == 7
    assert row["last_value"] == -1.0
    assert row["last_time"] == 1002.0
    assert (row["min_value"], row["max_value"]) == (-1.0, 9.0)
    assert (row["first_step"], row["chunk_span"], row["count"]) == (1, 6, 4)


@pytest.mark.parametrize("n", [1, 64, 65, 1000])
def test_all_nan_has_no_extremes(n: int) -> None:
    row = repository._summary_row("r", "k", _series(list(range(n)), [math.nan] * n))
    assert row["min_value"] is None
    assert row["max_value"] is None
    assert row["last_value"] is None
