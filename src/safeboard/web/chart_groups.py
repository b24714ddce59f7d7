"""Which metrics a run's page draws in one chart: the run's config may name groups under
``_charts`` (``{"acc": ["acc/train", "acc/val"]}``), as the TensorBoard drop-in's
``add_scalars`` does. A group is drawn where its first logged metric would be, each of its
metrics a line; every other metric keeps a chart of its own. A malformed ``_charts`` is
ignored, never an error (the config is the script's). The compare view draws the groups
that any of its runs names (``merged_groups``); run.js applies the same rules to metrics
that begin while a run's page is open (``named_groups`` gives it the groups known then)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from safeboard.vocabulary import CHARTS_KEY

__all__ = ["Chart", "chart_layout", "merged_groups", "named_groups"]


@dataclass(frozen=True)
class Chart:
    """One chart of the page: its title and the metrics drawn in it, in order."""

    title: str
    keys: tuple[str, ...]


def _groups(config: Mapping[str, Any]) -> dict[str, list[str]]:
    named = config.get(CHARTS_KEY)
    if not isinstance(named, Mapping):
        return {}
    return {
        str(title): [k for k in keys if isinstance(k, str)]
        for title, keys in named.items()
        if isinstance(keys, list)
    }


def named_groups(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The groups ``config`` names, malformed entries left out."""
    return _groups(config)


def merged_groups(configs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A config naming the groups of all ``configs``: a title's metrics in the order they
    were first named (the compare view draws a group of any compared run as one chart)."""
    merged: dict[str, dict[str, None]] = {}  # a dict per title: ordered, linear to merge
    for config in configs:
        for title, keys in _groups(config).items():
            merged.setdefault(title, {}).update(dict.fromkeys(keys))
    return {CHARTS_KEY: {title: list(keys) for title, keys in merged.items()}}


def chart_layout(config: Mapping[str, Any], keys: list[str]) -> list[Chart]:
    """The charts for ``keys`` (the run's metrics, in the page's order)."""
    present = set(keys)
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for name, wanted in _groups(config).items():
        mine = [k for k in dict.fromkeys(wanted) if k in present and k not in group_of]
        if len(mine) >= 2:  # one line alone is an ordinary chart
            members[name] = mine
            group_of.update(dict.fromkeys(mine, name))
    charts: list[Chart] = []
    placed: set[str] = set()
    for key in keys:
        title = group_of.get(key)
        if title is None:
            charts.append(Chart(key, (key,)))
        elif title not in placed:
            placed.add(title)
            charts.append(Chart(title, tuple(members[title])))
    return charts
