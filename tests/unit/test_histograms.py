"""Histograms per step (issue 17): the percentiles the distribution view draws, the steps
a long run is read at, what makes a histogram valid, and the SDK's binning and batching."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from safeboard.errors import InvalidRequest
from safeboard.metrics.histograms import (
    BASIS_POINTS,
    decode,
    encode,
    histogram_problem,
    percentiles,
    thin_steps,
)
from safeboard.sdk import media, tbhist


def test_percentiles_interpolate_inside_the_bucket_that_holds_them() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    counts = np.array([0.0, 10.0, 10.0, 0.0])
    got = percentiles(edges, counts)
    assert got is not None
    assert got[0] == 1.0
    assert got[-1] == 3.0
    assert got[BASIS_POINTS.index(5000)] == 2.0
    assert got[BASIS_POINTS.index(1587)] == pytest.approx(1.0 + 0.3174)
    assert got == sorted(got)


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert percentiles(np.array([0.0, 1.0]), np.array([0.0])) is None


def test_percentiles_of_binned_normal_values_are_within_a_bucket_of_the_truth() -> None:
    """The documented error: at most one bucket's width."""
    values = np.random.default_rng(1).normal(0, 1, 100_000)
    counts, edges = np.histogram(values, bins=64)
    got = percentiles(edges.astype(np.float64), counts.astype(np.float64))
    assert got is not None
    width = float(edges[1] - edges[0])
    truth = np.percentile(values, [bp / 100 for bp in BASIS_POINTS])
    assert np.all(np.abs(np.array(got) - truth) <= width)


def test_thin_steps_keeps_the_ends_and_spreads_the_rest() -> None:
    steps = list(range(0, 10_000, 7))
    picked = thin_steps(steps, 100)
    assert len(picked) == 100
    assert picked[0] == 0
    assert picked[-1] == steps[-1]
    assert picked == sorted(set(picked))
    assert thin_steps([1, 2, 3], 10) == [1, 2, 3]
    assert thin_steps([1, 2, 3], 1) == [3]


@pytest.mark.parametrize(
    ("edges", "counts", "problem"),
    [
        ([0, 1], [], "counts"),
        ([0, 1, 2], [1], "edges"),
        ([0, 0, 1], [1, 1], "edges"),
        ([0, float("nan"), 1], [1, 1], "edges"),
        ([0, 1, 2], [1, -1], "counts"),
        ([0, 1, 2], [1, float("inf")], "counts"),
    ],
)
def test_what_is_not_a_histogram(edges: list[float], counts: list[float], problem: str) -> None:
    said = histogram_problem(edges, counts)
    assert said is not None
    assert said.startswith(problem)


def test_arrays_round_trip_bit_exact() -> None:
    values = [0.0, -0.0, 1e-310, 1.5, 2.0**60]
    assert decode(encode(values)).view("<u8").tolist() == np.array(values).view("<u8").tolist()


def test_the_sdk_bins_raw_values_leaving_out_nan_and_infinities() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, float("nan"), float("inf")])
    entry = media.histogram_entry("w", values, counts=None, edges=None, step=5, when=1.0, bins=3)
    assert entry["counts"] == [1.0, 1.0, 2.0]
    assert entry["edges"] == [0.0, 1.0, 2.0, 3.0]
    assert entry["step"] == 5
    assert histogram_problem(entry["edges"], entry["counts"]) is None
    listed = media.histogram_entry(
        "w", [[1, 2], [3, 4]], counts=None, edges=None, step=0, when=1.0, bins=2
    )
    assert sum(listed["counts"]) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("w", None, None, None), "values, or counts with edges"),
        (("w", [1.0], [1], [0, 1]), "values, or counts with edges"),
        (("w", None, [1], None), "values, or counts with edges"),
        (("w", [float("nan")], None, None), "no finite values"),
        (("w", ["a"], None, None), "numbers"),
        (("w", None, [], [0]), "at least one bucket"),
        (("w", None, [1, 2], [0, 1]), "edges"),
        (("w", None, [1, 2], [0, 2, 1]), "edges"),
        (("w", None, [-1], [0, 1]), "counts"),
        (("a/../b", [1.0], None, None), "key"),
        (("w", [-1e308, 1e308], None, None), "too far apart"),
        (("w", None, [1e308, 1e308], [0, 1, 2]), "sum is finite"),
    ],
)
def test_the_sdk_refuses_in_the_call_what_the_server_would_refuse(
    args: tuple[object, ...], message: str
) -> None:
    key, values, counts, edges = args
    with pytest.raises(InvalidRequest, match=message):
        media.histogram_entry(
            str(key), values, counts=counts, edges=edges, step=0, when=1.0, bins=64
        )


def test_the_sdk_refuses_bad_steps_and_texts() -> None:
    with pytest.raises(InvalidRequest, match="step"):
        media.text_entry("t", "x", -1, 1.0)
    with pytest.raises(InvalidRequest, match="65536"):
        media.text_entry("t", "x" * 65_537, 0, 1.0)
    with pytest.raises(InvalidRequest, match="NUL"):
        media.text_entry("t", "a\x00", 0, 1.0)


def test_records_logged_in_a_row_become_one_batch_within_its_bounds() -> None:
    def one(step: int) -> dict[str, object]:
        entry = media.histogram_entry(
            "w", None, counts=[1.0], edges=[0.0, 1.0], step=step, when=1.0, bins=64
        )
        return media.steps_record(histogram=entry)

    artifact = {"id": "a", "kind": "image", "name": "x.png"}
    waiting: deque[dict[str, object]] = deque(
        [*(one(s) for s in range(1, media.MAX_ENTRIES + 5)), artifact, one(9999)]
    )
    first = one(0)
    media.absorb(first, waiting)
    assert len(first["histograms"]) == media.MAX_ENTRIES  # type: ignore[arg-type]
    assert len(waiting) == 5 + 1 + 1
    rest = waiting.popleft()
    media.absorb(rest, waiting)
    assert len(rest["histograms"]) == 5
    assert waiting[0] is artifact


def test_log_image_takes_the_keyed_form_and_the_earlier_one() -> None:
    pic = object()
    assert media.image_call("samples", pic, 7, None, 3) == (pic, 7, "samples")
    assert media.image_call("samples", pic, None, None, 3) == (pic, 3, "samples")
    assert media.image_call("samples", "a.png", None, None, -1) == ("a.png", 0, "samples")
    assert media.image_call(pic, 5, None, "x.png", 3) == (pic, 5, "x.png")  # (image, step)
    assert media.image_call(pic, None, 0, None, 3) == (pic, 0, None)
    assert media.image_call(pic, None, None, None, 3) == (pic, 3, None)
    assert media.image_call(pic, None, None, None, -1) == (pic, None, None)
    assert media.image_call(None, pic, 2, None, 3) == (pic, 2, None)  # image=..., step=...
    assert media.image_call("a.png", None, None, None, -1) == ("a.png", None, None)
    with pytest.raises(InvalidRequest, match="key"):
        media.image_call("", pic, 1, None, 0)


def test_an_imported_histogram_gets_finite_increasing_edges() -> None:
    row = {"tag": "w", "step": 3, "wall_time": 1.0, "limits": [0.0, 1.0, 1.7976931348623157e308],
           "counts": [2.0, 3.0, 1.0], "min": -0.5, "max": 4.0}  # fmt: skip
    entry = tbhist.to_entry(row)
    assert entry is not None
    assert entry["edges"] == [-0.5, 0.0, 1.0, 4.0]
    assert entry["counts"] == [2.0, 3.0, 1.0]
    no_extremes = tbhist.to_entry({**row, "min": None, "max": None})
    assert no_extremes is not None
    assert no_extremes["edges"] == [-1.0, 0.0, 1.0, 2.0]
    assert tbhist.to_entry({**row, "counts": []}) is None
    assert tbhist.to_entry({**row, "limits": [1.0, 0.0, 2.0]}) is None


def test_an_imported_histogram_past_the_bucket_bound_is_merged_in_pairs() -> None:
    limits = [float(i) for i in range(1, 3001)]
    row = {"tag": "w", "step": 0, "wall_time": 0.0, "limits": limits, "counts": [1.0] * 3000,
           "min": 0.0, "max": 3000.0}  # fmt: skip
    entry = tbhist.to_entry(row)
    assert entry is not None
    assert len(entry["counts"]) <= media.MAX_BUCKETS
    assert len(entry["edges"]) == len(entry["counts"]) + 1
    assert sum(entry["counts"]) == 3000
    assert entry["edges"][0] == 0.0
    assert entry["edges"][-1] == 3000.0
    assert histogram_problem(entry["edges"], entry["counts"]) is None


def test_the_sdk_merges_more_buckets_than_the_server_takes_in_pairs() -> None:
    edges = [float(i) for i in range(3001)]
    entry = media.histogram_entry(
        "w", None, counts=[1.0] * 3000, edges=edges, step=0, when=0.0, bins=64
    )
    assert len(entry["counts"]) <= media.MAX_BUCKETS
    assert sum(entry["counts"]) == 3000
    assert (entry["edges"][0], entry["edges"][-1]) == (0.0, 3000.0)
    assert histogram_problem(entry["edges"], entry["counts"]) is None
