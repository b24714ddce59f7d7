"""The compact metric body (``safeboard.wire``, SBC2): any batch reads back bit for bit,
converts to the plain body of the same batch (what a server from before gets), and a body
whose header the columns do not back is refused before anything is made from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard import wire
from safeboard.client import columns

_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.floats(width=32, allow_nan=True, allow_infinity=True),  # exact in float32
    st.sampled_from([0.0, -0.0, 0.5, 1e300, 2.0**-149]),
)


@st.composite
def _column(draw: st.DrawFn) -> wire.Arrays:
    n = draw(st.integers(1, 40))
    if draw(st.booleans()):
        first, stride = draw(st.integers(0, 2**40)), draw(st.integers(1, 2**20))
        steps = np.arange(first, first + stride * n, stride, dtype=np.int64)
    else:
        steps = np.array(draw(st.lists(st.integers(0, 2**53), min_size=n, max_size=n)))
    if draw(st.booleans()):
        single = draw(st.lists(st.floats(width=32, allow_nan=False), min_size=n, max_size=n))
        values = np.array(single, dtype=np.float64)
    else:
        values = np.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    times = np.array(draw(st.lists(st.floats(0, 2e9), min_size=n, max_size=n)))
    return steps.astype(np.int64), times, values


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abc/_", min_size=1, max_size=5), _column(), min_size=1,
                       max_size=4))  # fmt: skip
def test_any_batch_reads_back_bit_for_bit_and_as_the_plain_body(
    batch: dict[str, wire.Arrays],
) -> None:
    body = wire.pack_compact("batch-0001", batch)
    assert wire.is_compact(body)
    packed = wire.split(body)
    header = json.loads(packed.header)
    assert header["batch_id"] == "batch-0001"
    read = wire.compact_columns(packed.data, [(n, s, v) for _, n, s, v in header["metrics"]])
    assert [m[0] for m in header["metrics"]] == list(batch)
    for (steps, times, values), (s, t, v) in zip(batch.values(), read, strict=True):
        assert s.tolist() == steps.tolist()
        assert t.tobytes() == times.tobytes()
        assert v.tobytes() == values.tobytes()  # NaN payloads and -0.0 included
    assert wire.plain(body) == wire.pack_arrays("batch-0001", batch)
    assert len(body) <= len(wire.pack_arrays("batch-0001", batch)) + 8 * len(batch)


def test_tensorboard_scalars_take_12_bytes_a_point() -> None:
    n = 10_000
    steps = np.arange(0, 5 * n, 5, dtype=np.int64)
    values = np.random.default_rng(0).random(n).astype(np.float32).astype(np.float64)
    batch = {"loss": (steps, 1.7e9 + np.arange(n) * 0.1, values)}
    body = wire.pack_compact("batch-0001", batch)
    assert len(body) < 12 * n + 200
    assert len(wire.pack_arrays("batch-0001", batch)) > 24 * n


def test_the_client_knows_the_compact_magic_without_numpy() -> None:
    assert columns.COMPACT_MAGIC == wire.COMPACT_MAGIC


def test_only_a_compact_body_converts_to_plain() -> None:
    plain = wire.pack_arrays("batch-0001", {"a": ([1], [1.0], [2.0])})
    with pytest.raises(wire.WireError, match="not SBC2"):
        wire.plain(plain)


def _body(steps_blob: bytes, n: int = 20) -> memoryview:
    values = wire.encode_values(np.zeros(n))
    data = np.zeros(n).tobytes() + steps_blob + values
    return memoryview(data + b"\0" * (-(len(steps_blob) + len(values)) % 8))


@pytest.mark.parametrize(
    ("first", "stride", "count"),
    [(0, 1, 21), (0, 1, 2**40), (0, 0, 20), (-5, 1, 20), (2**62 - 5, 1, 20), (0, -1, 20)],
)
def test_a_strided_column_the_header_does_not_back_is_refused_before_it_is_made(
    first: int, stride: int, count: int
) -> None:
    blob = b"\x01" + np.array([first, stride, count], dtype="<i8").tobytes()
    with pytest.raises(wire.WireError, match="strided steps column"):
        wire.compact_columns(_body(blob), [(20, 25, 81)])


def test_columns_in_no_known_form_are_refused() -> None:
    with pytest.raises(wire.WireError, match="steps column"):
        wire.compact_columns(_body(b"\x07" * 25), [(20, 25, 81)])
    with pytest.raises(wire.WireError, match="bytes of columns"):
        wire.compact_columns(_body(b"\x07" * 25), [(20, 25, 90)])
