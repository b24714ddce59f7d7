"""What metrics publish to other domains' queries: a run's latest value of a metric as a
sub-select (the run filter's ``metrics.<key> < 1`` in runs/search.py), the keys a set
of runs logged (the runs table's column picker, runs/table.py) and a run's summaries (its
API answer, read on the connection of the run's access walk). Other domains use these
instead of the metric tables."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from safeboard.metrics.models import MetricSummaryRow
from safeboard.metrics.repository import Summary, summaries

__all__ = ["Summary", "keys_logged", "last_value", "summaries"]

_s = cast(sa.Table, MetricSummaryRow.__table__)


def last_value(run_id: sa.ColumnElement[Any], key: str) -> sa.ScalarSelect[float]:
    """The last value logged for ``key`` by the run ``run_id`` names (NULL: never logged)."""
    return (
        sa.select(_s.c.last_value).where(_s.c.run_id == run_id, _s.c.key == key).scalar_subquery()
    )


def keys_logged(run_ids: sa.ScalarSelect[Any], limit: int) -> sa.Select[Any]:
    """The distinct metric keys the runs ``run_ids`` selects have logged, in order, at most
    ``limit``."""
    return (
        sa.select(_s.c.key)
        .where(_s.c.run_id.in_(run_ids))
        .distinct()
        .order_by(_s.c.key)
        .limit(limit)
    )
