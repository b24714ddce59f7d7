"""How values read on the pages: times, durations, numbers, JSON values."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

__all__ = ["duration", "flatten", "number", "timestamp", "value"]


def timestamp(moment: datetime | None) -> str:
    """UTC, to the second: 2026-11-23 04:43:14."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime, end: datetime | None, now: datetime) -> str:
    seconds = int(((end or now) - start).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def number(x: float | None) -> str:
    """A number shortened; "" for none (never logged, or a min of NaN values only), and
    NaN and the infinities by name as the API writes them (a last value that was NaN)."""
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, int) or (x == int(x) and abs(x) < 1e15):
        return str(int(x))
    return f"{x:.6g}"


def value(x: Any) -> str:
    """A param or system value: numbers shortened, strings as they are, the rest as JSON."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int | float):
        return number(x)
    if isinstance(x, str):
        return x
    return json.dumps(x, ensure_ascii=False, sort_keys=True)


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted paths: {"opt": {"lr": 0.1}} -> {"opt.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, found in document.items():
        path = f"{prefix}{key}"
        if isinstance(found, dict) and found:
            flat.update(flatten(found, f"{path}."))
        else:
            flat[path] = found
    return flat
