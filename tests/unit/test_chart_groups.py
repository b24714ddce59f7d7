"""The run page's chart groups (web/chart_groups.py): the config's ``_charts`` names
metrics drawn together; anything malformed in it is ignored, never an error."""

from __future__ import annotations

from typing import Any

import pytest

from safeboard.web.chart_groups import Chart, chart_layout, merged_groups, named_groups

KEYS = ["loss", "acc/train", "lr", "acc/val", "acc/test"]


def test_a_group_is_drawn_where_its_first_metric_was() -> None:
    config = {"_charts": {"acc": ["acc/train", "acc/val", "acc/test"]}}
    assert chart_layout(config, KEYS) == [
        Chart("loss", ("loss",)),
        Chart("acc", ("acc/train", "acc/val", "acc/test")),
        Chart("lr", ("lr",)),
    ]


def test_metrics_not_logged_are_left_out_and_a_group_of_one_is_a_plain_chart() -> None:
    config = {"_charts": {"acc": ["acc/train", "acc/missing"], "x": ["lr", "loss"]}}
    assert chart_layout(config, ["loss", "acc/train", "lr"]) == [
        Chart("x", ("lr", "loss")),
        Chart("acc/train", ("acc/train",)),
    ]


def test_a_metric_belongs_to_one_group() -> None:
    config = {"_charts": {"a": ["loss", "lr"], "b": ["lr", "acc/val", "acc/test"]}}
    assert [c.keys for c in chart_layout(config, KEYS)] == [
        ("loss", "lr"), ("acc/train",), ("acc/val", "acc/test"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "charts", [None, "acc", ["acc/train"], {"acc": "acc/train"}, {"acc": [1, None, {"k": 2}]}]
)
def test_malformed_groups_are_ignored(charts: Any) -> None:
    assert [c.keys for c in chart_layout({"_charts": charts}, KEYS)] == [(k,) for k in KEYS]


def test_the_compare_view_draws_the_groups_of_every_run() -> None:
    configs = [
        {"_charts": {"acc": ["acc/train", "acc/val"]}},
        {"_charts": {"acc": ["acc/val", "acc/test"], "lr": "malformed"}},
        {"lr": 0.1},
    ]
    merged = merged_groups(configs)
    assert merged == {"_charts": {"acc": ["acc/train", "acc/val", "acc/test"]}}
    assert chart_layout(merged, ["loss", "acc/test", "acc/train"]) == [
        Chart("loss", ("loss",)),
        Chart("acc", ("acc/train", "acc/test")),
    ]
    assert named_groups(configs[1]) == {"acc": ["acc/val", "acc/test"]}


def test_merging_large_groups_of_many_runs_is_linear() -> None:
    """A run's config may name a group of ~20,000 metrics (within its 256 KiB); the
    compare view merges up to 20 runs' groups. The merge used to test each key against a
    list (quadratic: 3.5 s for two such runs, minutes for twenty, a worker thread held by
    one page request). Five runs here; generous for a loaded machine."""
    import time

    configs = [{"_charts": {"g": [f"k{r}_{i}" for i in range(20_000)] + ["k0_0"]}}
               for r in range(5)]  # fmt: skip
    began = time.perf_counter()
    merged = merged_groups(configs)["_charts"]["g"]
    assert time.perf_counter() - began < 3.0
    assert len(merged) == 100_000
    assert merged[:2] == ["k0_0", "k0_1"]
    assert merged[20_000] == "k1_0"  # in the order first named, each once
