"""``runs list --sort KEY [--desc]``: the dashboard's sort keys (created, ended, name,
status, params.<path>, tags.<key>, metrics.<key>: a metric's last value). The list API
pages newest first only, so the CLI reads every run the filter matches and sorts them
itself; runs without a value come last in either direction, as on the dashboard."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from safeboard.client.models import RunListed
from safeboard.errors import BadRequest

__all__ = ["PLAIN_SORTS", "config_path", "sort_runs"]

PLAIN_SORTS = ("created", "ended", "name", "status")


def config_path(sort: str) -> str | None:
    """The config path a ``params.`` sort needs listed with each run."""
    root, _, rest = sort.partition(".")
    return rest if root == "params" and rest else None


def _check(sort: str) -> None:
    root, _, rest = sort.partition(".")
    if sort not in PLAIN_SORTS and not (root in ("params", "tags", "metrics") and rest):
        raise BadRequest(
            f"--sort {sort!r}: one of {', '.join(PLAIN_SORTS)}, params.<path>, tags.<key> "
            "or metrics.<key>"
        )


def _param(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value(run: RunListed, sort: str, metric: Callable[[str, str], Any]) -> Any:
    if sort in ("created", "ended"):
        return run.created_at if sort == "created" else run.ended_at
    if sort in ("name", "status"):
        return str(getattr(run, sort))
    root, _, rest = sort.partition(".")
    if root == "tags":
        return run.tags.get(rest)
    if root == "params":
        return _param(run.config, rest)
    value = metric(run.id, rest)
    return None if isinstance(value, float) and math.isnan(value) else value


def _key(value: Any) -> tuple[int, Any]:
    """Numbers before text (as JSON types differ), each compared among its own kind."""
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, datetime):
        return (0, value.timestamp())
    return (2, str(value))


def sort_runs(
    runs: list[RunListed], sort: str, descending: bool, metric: Callable[[str, str], Any]
) -> list[RunListed]:
    """``runs`` ordered by ``sort`` (then id), those without a value last."""
    _check(sort)
    values = {run.id: _value(run, sort, metric) for run in runs}
    present = [r for r in runs if values[r.id] is not None]
    absent = [r for r in runs if values[r.id] is None]
    present.sort(key=lambda r: (_key(values[r.id]), r.id), reverse=descending)
    return present + absent
