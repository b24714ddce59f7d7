"""Metric batches (R1, S17): the wire schema, conversion to arrays, downsampling; property
tests over open-ended input."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from safeboard import wire
from safeboard.errors import InvalidRequest
from safeboard.metrics.batches import MAX_POINTS, validate_batch
from safeboard.metrics.codec import (
    Series,
    decode,
    downsample,
    encode,
    merge,
    to_json_floats,
)
from safeboard.metrics.schemas import MetricBatch, PackedHeader
from safeboard.sdk.batches import Batch, Packer, to_batches

floats = st.floats(allow_nan=True, allow_infinity=True)
steps = st.integers(min_value=0, max_value=2**62)


def _unpacked(body: bytes) -> tuple[str, dict[str, tuple[np.ndarray, ...]]]:
    """A packed body read as the server reads it: the batch id and each key's arrays."""
    packed = wire.split(body)
    header = PackedHeader.model_validate_json(packed.header)
    arrays = wire.columns(packed.data, [n for _, n in header.metrics])
    return header.batch_id, {k: a for (k, _), a in zip(header.metrics, arrays, strict=True)}


def _bits(values: list[float]) -> list[int]:
    return np.array(values, dtype="<f8").view("<u8").tolist()


times_ = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(steps, times_, floats), min_size=1, max_size=200))
def test_sdk_batches_are_packed_once_bit_exact(points: list[tuple[int, float, float]]) -> None:
    """Logged points become the packed body the server stores, every float bit for bit
    (NaN with its payload, infinities, -0.0), no text on the way."""
    logged = [(step, at, {"m": value}) for step, at, value in points]
    (batch,) = to_batches(logged)
    batch_id, columns = _unpacked(batch.body)
    assert batch_id == batch.batch_id
    assert batch.points == len(points)
    got_steps, got_times, got_values = columns["m"]
    assert got_steps.tolist() == [s for s, _, _ in points]
    assert got_times.view("<u8").tolist() == _bits([t for _, t, _ in points])
    assert got_values.view("<u8").tolist() == _bits([v for _, _, v in points])
    series = validate_batch(batch_id, [("m", Series(got_steps, got_times, got_values))])["m"]
    again = decode(*encode(series))
    assert again.values.view("<u8").tolist() == got_values.view("<u8").tolist()


@pytest.mark.parametrize("slice_points", [1, 100, 128, 5_000])
def test_a_batch_sealed_from_slices_is_the_body_packed_whole(slice_points: int) -> None:
    """The sender seals a batch from the slices log() packed, as buffers the spool writes
    one after the other (never joined: issue 13); joined, they are the body the server
    reads, every key's steps, times and values in order. The buffers are each key's
    chunks (128, 256, ... 4,096 points, then 4,096 each), however many slices came: 79
    slices of 128 points made 475 buffers, which sealing and the spool's writer walked
    while holding the interpreter lock."""
    packer = Packer()
    keys = ["loss", "acc"]
    for first in range(0, 10_000, slice_points):  # as log()'s pack_inline hands them over
        flat: list[object] = []
        for step in range(first, min(first + slice_points, 10_000)):
            flat += [step, 1.7e9 + step, {k: step * (i + 1) * 0.5 for i, k in enumerate(keys)}]
        packer.add_flat(flat)
    (batch,) = packer.batches()
    assert len(batch.parts) == 1 + len(keys) * 3 * 7  # the header; 7 chunks of 3 columns
    assert batch.points == 20_000
    batch_id, columns = _unpacked(batch.body)
    assert batch_id == batch.batch_id
    for i, key in enumerate(keys):
        got_steps, got_times, got_values = columns[key]
        assert got_steps.tolist() == list(range(10_000))
        assert got_times.tolist() == [1.7e9 + s for s in range(10_000)]
        assert got_values.tolist() == [s * (i + 1) * 0.5 for s in range(10_000)]


_KEYS = ("loss", "acc", "lr")


@settings(deadline=None, max_examples=40)  # up to 1,200 points a case, made in Python
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=200),  # points in the slice
            st.one_of(  # the keys each point logs: the same for the slice, or its own
                st.lists(st.sampled_from(_KEYS), min_size=1, max_size=3, unique=True),
                st.none(),
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_any_slices_of_any_keys_come_out_of_the_packer_in_order(
    given_slices: list[tuple[int, list[str] | None]], chance: Any
) -> None:
    """Slices of points, each logging the same keys or each point its own (split across
    chunks, keys joining and leaving groups): per key, the sealed batches hold every
    point logged with it, in the order logged, bit for bit."""
    packer = Packer()
    expected: dict[str, list[tuple[int, float, float]]] = {key: [] for key in _KEYS}
    step = 0
    for count, keys in given_slices:
        flat: list[object] = []
        for _ in range(count):
            logged = keys or chance.sample(_KEYS, chance.randint(1, 3))
            data = {key: chance.uniform(-1e9, 1e9) for key in logged}
            flat += [step, 1.7e9 + step / 7, data]
            for key, value in data.items():
                expected[key].append((step, 1.7e9 + step / 7, value))
            step += 1
        packer.add_flat(flat)
    got: dict[str, list[tuple[int, float, float]]] = {key: [] for key in _KEYS}
    for batch in packer.batches():
        _, columns = _unpacked(batch.body)
        assert batch.points == sum(len(c[0]) for c in columns.values())
        for key, (key_steps, key_times, key_values) in columns.items():
            got[key] += zip(key_steps.tolist(), key_times.tolist(), key_values.tolist(),
                            strict=True)  # fmt: skip
    assert got == expected


def test_keys_logged_together_share_their_steps_and_times_in_small_first_chunks() -> None:
    """Keys logged together keep their steps and times once (as the slices did: a batch
    of 10 keys holds 10 B a value, not 24), and a first chunk is 128 points: keys logged
    once hold small chunks, not the 4,096 points a busy group grows to."""
    packer = Packer()
    packer.add_flat([0, 1.7e9, {f"key_{k}": float(k) for k in range(500)}])
    packer.add_flat([1, 1.8e9, {"alone": 1.0}])
    (batch,) = packer.batches()
    columns = batch.parts[1:]
    assert len(columns) == 501 * 3
    assert all(part.size == 1 and part.base.shape[-1] == 128 for part in columns)
    # Per key its steps, times and values: key_0's are columns[0:3], key_1's [3:6].
    assert np.shares_memory(columns[0], columns[3])  # one steps column for both
    assert np.shares_memory(columns[1], columns[4])  # one times column
    assert not np.shares_memory(columns[2], columns[5])  # values of their own
    _, unpacked = _unpacked(batch.body)
    assert [unpacked[f"key_{k}"][2].tolist() for k in (0, 499)] == [[0.0], [499.0]]
    assert unpacked["alone"][0].tolist() == [1]


@given(st.lists(st.lists(st.tuples(steps, floats), min_size=1, max_size=20), min_size=1,
                max_size=6))  # fmt: skip
def test_parts_of_any_arrays_join_to_the_body_of_their_whole(
    slices: list[list[tuple[int, float]]],
) -> None:
    """Slices given as lists, big-endian arrays or strided views are converted as the whole
    would be: the parts join to ``pack_arrays`` of the concatenated columns."""
    pieces = []
    for n, given_slice in enumerate(slices):
        steps_ = np.array([s for s, _ in given_slice], dtype=">i8" if n % 2 else "<i8")
        values = np.repeat(np.array([v for _, v in given_slice], dtype="<f8"), 2)[::2]
        times: object = [1.7e9 + k for k in range(len(given_slice))]
        pieces.append((steps_, times, values.tolist() if n % 3 == 2 else values))

    def joined(given: list[tuple[object, ...]]) -> tuple[np.ndarray, ...]:
        return tuple(
            np.concatenate([np.asarray(piece[field], "<f8" if field else "<i8") for piece in given])
            for field in range(3)
        )

    parts = wire.pack_parts("b" * 16, {"m": pieces, "n": pieces[:1]})
    expected = wire.pack_arrays("b" * 16, {"m": joined(pieces), "n": joined(pieces[:1])})
    assert b"".join(parts) == expected


def test_points_whose_step_the_server_refuses_are_dropped_alone() -> None:
    logged = [(-1, 1.7e9, {"m": 1.0}), (2**62 + 1, 1.7e9, {"m": 2.0}), (2**64, 1.7e9, {"m": 3.0}),
              (5, 1.7e9, {"m": 4.0}), ("x", 1.7e9, {"m": 5.0})]  # fmt: skip
    (batch,) = to_batches(logged)  # type: ignore[arg-type]
    _, columns = _unpacked(batch.body)
    assert columns["m"][0].tolist() == [5]
    assert columns["m"][2].tolist() == [4.0]
    assert to_batches([(-1, 1.7e9, {"m": 1.0})]) == []


def test_a_batch_spooled_as_json_by_an_earlier_sdk_packs_the_same() -> None:
    record = {"batch_id": "b" * 32, "metrics": {"m": {"steps": [0, 1, 2, 3], "times": [1.5] * 4,
              "values": [1.5, "NaN", "Infinity", "-Infinity"]}}}  # fmt: skip
    batch = Batch.from_json(record)
    again = Batch.from_body(batch.body)
    assert (again.batch_id, again.body, again.points) == (batch.batch_id, batch.body, batch.points)
    assert batch.points == 4
    _, columns = _unpacked(batch.body)
    values = columns["m"][2]
    assert values[0] == 1.5
    assert math.isnan(values[1])
    assert values[2:].tolist() == [math.inf, -math.inf]


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


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


# Keys the server takes (a printable "." or ".." is not one).
metric_keys = st.text(min_size=1, max_size=20).filter(lambda k: wire.metric_key_problem(k) is None)


@given(st.dictionaries(metric_keys, st.lists(st.tuples(steps, floats), min_size=1, max_size=50),
                       min_size=1, max_size=5))  # fmt: skip
def test_packed_batches_round_trip(metrics: dict[str, list[tuple[int, float]]]) -> None:
    batch = {k: {"steps": [s for s, _ in pts], "times": [1.7e9] * len(pts),
                 "values": [v for _, v in pts]} for k, pts in metrics.items()}  # fmt: skip
    body = wire.pack("b" * 16, batch)
    packed = wire.split(body)
    assert (8 + len(packed.header)) % 8 == 0  # columns start aligned
    header = PackedHeader.model_validate_json(packed.header)
    assert [k for k, _ in header.metrics] == list(metrics)
    arrays = wire.columns(packed.data, [n for _, n in header.metrics])
    for (steps_, times, values), pts in zip(arrays, metrics.values(), strict=True):
        assert steps_.tolist() == [s for s, _ in pts]
        assert times.tolist() == [1.7e9] * len(pts)
        assert _same(values, np.array([v for _, v in pts], dtype="<f8"))


def test_packing_reads_the_json_spelling_of_specials() -> None:
    body = wire.pack("b" * 16, {"m": {"steps": [1, 2, 3], "times": [0.0] * 3,
                                      "values": [1.5, "NaN", "-Infinity"]}})  # fmt: skip
    ((_, _, values),) = wire.columns(wire.split(body).data, [3])
    assert values[0] == 1.5
    assert math.isnan(values[1])
    assert values[2] == -math.inf


@given(st.binary(max_size=200), st.lists(st.integers(0, 10), max_size=4))
def test_any_bytes_are_a_body_or_a_wire_error(body: bytes, counts: list[int]) -> None:
    with contextlib.suppress(wire.WireError):
        packed = wire.split(body)
        with contextlib.suppress(ValidationError):
            PackedHeader.model_validate_json(packed.header)
        wire.columns(packed.data, counts)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"SBC", "shorter"),
        (b"XXXX\x00\x00\x00\x00", "SBC1"),
        (b"SBC1\xff\xff\xff\x7f{}", "runs past"),
    ],
)
def test_malformed_packed_bodies_say_what_is_wrong(body: bytes, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        wire.split(body)


def test_columns_must_fill_the_body_exactly() -> None:
    body = wire.pack("b" * 16, {"m": {"steps": [1], "times": [0.0], "values": [2.0]}})
    data = wire.split(body).data
    with pytest.raises(wire.WireError, match="needs 48"):
        wire.columns(data, [2])
    with pytest.raises(wire.WireError, match="needs 0"):
        wire.columns(data, [0])


def test_keys_the_server_refuses_are_dropped_alone() -> None:
    """One bad key (a "..", say) must not cost the batch its other metrics."""
    logged = [(i, 1.7e9, {"loss": 0.5, "../x": 1.0}) for i in range(3)]
    (batch,) = to_batches(logged)
    assert list(_unpacked(batch.body)[1]) == ["loss"]
    assert to_batches([(0, 1.7e9, {"a/./b": 1.0})]) == []


def test_values_that_are_not_numbers_are_dropped_alone() -> None:
    """``run.log({"b": "text"})`` made packing raise ValueError in the sender: the batch
    and every good point logged with it were never delivered (the sender retried it)."""
    logged = [(0, 1.7e9, {"loss": 0.5, "b": "text"}), (1, 1.7e9, {"loss": 0.25, "b": 2}),
              (2, 1.7e9, {"loss": None, "b": [1.0]})]  # fmt: skip
    (batch,) = to_batches(logged)  # type: ignore[arg-type]
    _, columns = _unpacked(batch.body)
    assert columns["loss"][0].tolist() == [0, 1]
    assert columns["loss"][2].tolist() == [0.5, 0.25]
    assert columns["b"][0].tolist() == [1]
    assert columns["b"][2].tolist() == [2.0]
    assert to_batches([(0, 1.7e9, {"m": object()})]) == []  # type: ignore[dict-item]


def test_one_rule_bounds_the_points_of_a_batch_whatever_its_body() -> None:
    """The JSON body had no bound on a batch's points (1,000,000 per column, 1,000 keys);
    the packed one did: now both have validate_batch's."""
    half = Series(
        np.zeros(MAX_POINTS // 2, "<i8"), np.zeros(MAX_POINTS // 2), np.zeros(MAX_POINTS // 2)
    )
    assert len(validate_batch("b" * 16, [("a", half), ("b", half)])) == 2
    one = Series(np.zeros(1, "<i8"), np.zeros(1), np.zeros(1))
    with pytest.raises(InvalidRequest, match="more than 1,000,000 points"):
        validate_batch("b" * 16, [("a", half), ("b", half), ("c", one)])
