"""The run page's "System metrics" section: the charts of the keys the SDK samples under
``system/`` (CPU, memory, disk, network, GPUs; docs/sdk.md), drawn by the same chart code
as the training metrics (run.js, chart.js), below them and apart from them."""

from __future__ import annotations

from collections.abc import Sequence

from safeboard.metrics.repository import Summary
from safeboard.vocabulary import is_system_metric
from safeboard.web.html import Markup, el

__all__ = ["split", "system_section"]


def split(summaries: Sequence[Summary]) -> tuple[list[Summary], list[Summary]]:
    """The training metrics and the system metrics, each in the order given."""
    training = [s for s in summaries if not is_system_metric(s.key)]
    return training, [s for s in summaries if is_system_metric(s.key)]


def system_section(summaries: Sequence[Summary]) -> Markup:
    """Hidden while the run has no system metrics: run.js shows it when the first
    arrives."""
    figures = [
        el(
            "figure",
            el("h3", s.key),
            class_="chart",
            data_key=s.key,
            data_count=s.count,
            data_testid="system-chart",
        )
        for s in summaries
    ]
    return el(
        "section",
        el("h2", "System metrics"),
        el(
            "p",
            "Sampled by the SDK every few seconds: CPU, memory, disk and network of the "
            "machine and of the training process, and each GPU. A sample's step is its "
            "number in the run; choose “Wall time” on the X axis to read them by the clock.",
            class_="hint",
        ),
        el("div", figures, class_="charts", id="system-charts"),
        id="system-metrics",
        hidden=not summaries,
    )
