"""safeboard.metrics.codec: a chunk's stored columns. Steps that advance by one stride
and values exact in float32 are stored compactly (an import of TensorBoard scalars: 12
bytes a point, not 24), every other column as plain 8-byte numbers; whatever the form,
a chunk decodes to the very bits it was given, and a column stored before the compact
forms existed (always plain) still reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from safeboard.metrics import codec

_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.floats(width=32, allow_nan=True, allow_infinity=True),  # exact in float32
    st.sampled_from([0.0, -0.0, 0.5, 1e300, 2.0**-149, float(np.float32(0.1))]),
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 60),
    strided=st.booleans(),
)
def test_any_chunk_decodes_to_the_bits_it_was_given(data: st.DataObject, n: int,
                                                     strided: bool) -> None:  # fmt: skip
    if strided:
        first = data.draw(st.integers(0, 2**40))
        stride = data.draw(st.integers(1, 2**20))
        steps = np.arange(first, first + stride * n, stride, dtype=np.int64)
    else:
        steps = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2**53)))
    values = np.array(data.draw(st.lists(_FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    times = np.array(data.draw(st.lists(st.floats(0, 2e9), min_size=n, max_size=n)))
    stored = codec.encode(codec.Series(steps, times, values))
    back = codec.decode(*stored)
    assert back.steps.dtype == np.int64
    assert back.steps.tolist() == steps.tolist()
    assert back.times.tobytes() == times.tobytes()
    assert back.values.tobytes() == values.tobytes()  # bit for bit: NaN payloads, -0.0
    without = codec.decode_without_times(stored[0], stored[2])
    assert without.steps.tolist() == steps.tolist()
    assert without.values.tobytes() == values.tobytes()


def test_tensorboard_scalars_take_12_bytes_a_point() -> None:
    n = 10_000
    steps = np.arange(5, 5 + 2 * n, 2, dtype=np.int64)
    values = np.random.default_rng(7).random(n).astype(np.float32).astype(np.float64)
    stored_steps, times, stored_values = codec.encode(
        codec.Series(steps, np.full(n, 1.7e9), values)
    )
    assert len(stored_steps) == 25
    assert len(stored_values) == 1 + 4 * n
    assert (len(stored_steps) + len(times) + len(stored_values)) / n < 12.01


@pytest.mark.parametrize(
    ("steps", "values"),
    [
        ([0, 1, 2, 4, 5], [0.5] * 5),  # not one stride
        ([3, 2, 1, 0, -1], [0.5] * 5),  # a stride below zero
        ([7, 7, 7, 7], [0.5] * 4),  # no stride at all
        ([0, 1, 2], [0.5] * 3),  # too few to gain
    ],
)
def test_steps_without_one_positive_stride_stay_plain(steps: list[int], values: list[float]
                                                      ) -> None:  # fmt: skip
    stored = codec.encode_steps(np.array(steps, dtype=np.int64))
    assert stored == np.array(steps, dtype="<i8").tobytes()


def test_values_not_exact_in_float32_stay_plain() -> None:
    values = np.array([0.5, 0.1, 2.0])  # 0.1 is not a float32
    assert codec.encode_values(values) == values.astype("<f8").tobytes()
    huge = np.array([1e39, 1.0])  # past float32's range: not inf
    assert codec.encode_values(huge) == huge.astype("<f8").tobytes()


def test_plain_columns_stored_before_the_compact_forms_still_read() -> None:
    steps = np.arange(100, dtype="<i8")
    values = np.linspace(0, 1, 100)
    back = codec.decode(steps.tobytes(), np.zeros(100).tobytes(), values.tobytes())
    assert back.steps.tolist() == steps.tolist()
    assert back.values.tolist() == values.tolist()


@pytest.mark.parametrize("blob", [b"\x09" + bytes(24), b"\x01" + bytes(16), b"\x02" + bytes(4)])
def test_a_steps_column_in_no_known_form_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="no known form"):
        codec.decode_steps(blob)


@pytest.mark.parametrize("blob", [b"\x09" + bytes(4), b"\x01" + bytes(24), b"\x02" + bytes(6)])
def test_a_values_column_in_no_known_form_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="no known form"):
        codec.decode_values(blob)
