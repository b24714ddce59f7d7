"""What metrics publish to other domains' queries: a run's latest value of a metric as a
sub-select (the run filter's ``metrics.<key> < 1`` in runs/search.py). Other domains use
it instead of the metric tables."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from safeboard.metrics.models import MetricSummaryRow

__all__ = ["last_value"]

_s = cast(sa.Table, MetricSummaryRow.__table__)


def last_value(run_id: sa.ColumnElement[Any], key: str) -> sa.ScalarSelect[float]:
    """The last value logged for ``key`` by the run ``run_id`` names (NULL: never logged)."""
    return (
        sa.select(_s.c.last_value).where(_s.c.run_id == run_id, _s.c.key == key).scalar_subquery()
    )
