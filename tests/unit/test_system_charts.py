"""The dashboard keeps the SDK's system metrics apart (web/system_charts.py): the run
page's section, and the runs table that never picks one as a default column."""

from __future__ import annotations

from safeboard.metrics.repository import Summary
from safeboard.web.project_page import default_columns
from safeboard.web.system_charts import split, system_section


def _summary(key: str) -> Summary:
    return Summary(key, 3, 2, 0.0, 1.0, 0.0, 1.0)


def test_split_keeps_the_order_within_each_group() -> None:
    keys = ["acc", "system/cpu_percent", "loss", "system/gpu0/power_w", "systematic"]
    training, system = split([_summary(k) for k in keys])
    assert [s.key for s in training] == ["acc", "loss", "systematic"]
    assert [s.key for s in system] == ["system/cpu_percent", "system/gpu0/power_w"]


def test_the_section_is_hidden_until_there_is_a_system_metric() -> None:
    empty = system_section([])
    assert 'id="system-metrics" hidden' in empty
    assert 'id="system-charts"' in empty  # where run.js puts the first one that arrives
    shown = system_section([_summary("system/cpu_percent")])
    assert "hidden" not in shown
    assert 'data-key="system/cpu_percent"' in shown
    assert 'data-testid="system-chart"' in shown


def test_default_columns_never_pick_a_system_metric() -> None:
    metrics = ["acc", "system/cpu_percent", "system/disk/free_gib", "loss"]
    assert default_columns(["lr"], metrics) == ["metrics.acc", "metrics.loss", "params.lr"]
