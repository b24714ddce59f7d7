"""Metric batches (R1, S17): the wire schema, conversion to arrays, downsampling; property
tests over open-ended input."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from safeboard.metrics.codec import (
    Series,
    decode,
    downsample,
    encode,
    from_wire,
    merge,
    to_json_floats,
)
from safeboard.metrics.schemas import MetricBatch
from safeboard.sdk.sender import to_batches

floats = st.floats(allow_nan=True, allow_infinity=True)
steps = st.integers(min_value=0, max_value=2**62)


@given(st.lists(st.tuples(steps, floats), min_size=1, max_size=200))
def test_sdk_batches_pass_the_server_schema_and_round_trip(points: list[tuple[int, float]]) -> None:
    logged = [(step, 1_700_000_000.0, {"m": value}) for step, value in points]
    (batch,) = to_batches(logged)
    parsed = MetricBatch.model_validate_json(json.dumps(batch, allow_nan=False))
    column = parsed.metrics["m"]
    series = from_wire(column.steps, column.times, column.values)
    assert series.steps.tolist() == [s for s, _ in points]
    sent = [v for _, v in points]
    got = series.values.tolist()
    assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(sent, got, strict=True))
    again = decode(*encode(series))
    assert again.steps.tolist() == series.steps.tolist()


@given(st.text(max_size=300))
def test_any_text_is_a_batch_or_a_validation_error(text: str) -> None:
    with contextlib.suppress(ValidationError):  # anything else would fail the test
        MetricBatch.model_validate_json(text)


@pytest.mark.parametrize("bad", ['{"lr": NaN}', "[1, 2]", '{"batch_id": 5}', ""])
def test_malformed_batches_are_validation_errors(bad: str) -> None:
    with pytest.raises(ValidationError):
        MetricBatch.model_validate_json(bad)


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.floats(-1e6, 1e6)), min_size=1, max_size=500),
    st.integers(1, 50),
)
def test_downsampling_keeps_every_extreme_and_count(
    points: list[tuple[int, float]], n: int
) -> None:
    series = merge([Series(np.array([s for s, _ in points], dtype="<i8"),
                           np.zeros(len(points)), np.array([v for _, v in points]))])  # fmt: skip
    buckets = downsample(series, n)
    assert len(buckets.min) <= n
    assert int(buckets.count.sum()) == len(points)
    assert float(buckets.min.min()) == min(v for _, v in points)
    assert float(buckets.max.max()) == max(v for _, v in points)
    assert list(buckets.first_step) == sorted(buckets.first_step)


def test_json_floats_spell_out_specials() -> None:
    assert to_json_floats(np.array([1.5, math.nan, math.inf, -math.inf])) == [
        1.5, "NaN", "Infinity", "-Infinity",
    ]  # fmt: skip
