"""What metrics publish to other domains' queries: a run's latest value of a metric as a
sub-select (the run filter's ``metrics.<key> < 1`` in runs/search.py), the last values
of some keys for a page of runs (the run list's ``metrics``), the keys a set of runs
logged (the runs table's column picker, runs/table.py) and a run's summaries (its API
answer, read on the connection of the run's access walk). Other domains use these
instead of the metric tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from safeboard.metrics.models import MetricSummaryRow
from safeboard.metrics.repository import Summary, summaries

__all__ = ["Summary", "keys_logged", "last_value", "last_values", "summaries"]

_s = cast(sa.Table, MetricSummaryRow.__table__)


def last_value(run_id: sa.ColumnElement[Any], key: str) -> sa.ScalarSelect[float]:
    """The last value logged for ``key`` by the run ``run_id`` names (NULL: never logged)."""
    return (
        sa.select(_s.c.last_value).where(_s.c.run_id == run_id, _s.c.key == key).scalar_subquery()
    )


def last_values(
    conn: Connection, run_ids: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, float]]:
    """The last values of ``keys`` that the runs ``run_ids`` logged, by run and key: NaN
    where the last value was NaN (a NULL ``last_value``), no entry where a run never
    logged the key. One query on the summaries' primary key, so a NaN is told apart from
    "never logged", which a ``last_value`` sub-select answers with the same NULL."""
    found: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
    if not run_ids or not keys:
        return found
    query = sa.select(_s.c.run_id, _s.c.key, _s.c.last_value).where(
        _s.c.run_id.in_(list(run_ids)), _s.c.key.in_(list(keys))
    )
    for run_id, key, value in conn.execute(query):
        found[run_id][key] = math.nan if value is None else float(value)
    return found


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
