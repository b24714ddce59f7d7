"""What makes a metric batch valid: one function for the JSON body, the packed body
(``safeboard.wire``) and any other caller of the ingest use case, so the rules and their
messages cannot drift apart.

Parsing a body only gives it a shape (a batch id, keys, and three arrays per key); every
rule about the values is here. The API schema documents the same bounds from the
constants below (``metrics/schemas.py``) without enforcing them a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from safeboard.errors import InvalidRequest
from safeboard.metrics.codec import Series, from_wire
from safeboard.vocabulary import metric_key_problem
from safeboard.wire import MAX_STEP

__all__ = [
    "BATCH_ID_PATTERN",
    "MAX_KEYS",
    "MAX_POINTS",
    "MAX_STEP",
    "from_json_columns",
    "validate_batch",
]

BATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
MAX_KEYS = 1000
MAX_POINTS = 1_000_000


def _steps_problem(key: str) -> str:
    return f"metrics.{key}.steps: from 0 to {MAX_STEP}"


def from_json_columns(
    key: str, steps: Sequence[int], times: Sequence[float], values: Sequence[float | str]
) -> Series:
    """The arrays of one key of a JSON batch (a step past int64 is refused, not a 500)."""
    try:
        return from_wire(steps, times, values)
    except OverflowError:
        raise InvalidRequest(_steps_problem(key)) from None


def validate_batch(batch_id: str, metrics: Iterable[tuple[str, Series]]) -> dict[str, Series]:
    """The batch as a mapping of key to arrays, or InvalidRequest naming the field."""
    if _BATCH_ID.fullmatch(batch_id) is None:
        raise InvalidRequest("batch_id: 8 to 64 letters, digits, '_' or '-'")
    batch: dict[str, Series] = {}
    points = 0
    for key, series in metrics:
        problem = metric_key_problem(key)
        if problem:
            raise InvalidRequest(f"metrics: {problem} ({key[:80]!r})")
        if key in batch:
            raise InvalidRequest(f"metrics: the key {key!r} appears twice")
        if len(batch) == MAX_KEYS:
            raise InvalidRequest(f"metrics: more than {MAX_KEYS} keys in one batch")
        n = len(series)
        if n == 0:
            raise InvalidRequest(f"metrics.{key}: at least one point")
        if series.times.size != n or series.values.size != n:
            raise InvalidRequest(f"metrics.{key}: steps, times and values need equal lengths")
        points += n
        if points > MAX_POINTS:
            raise InvalidRequest(f"metrics: more than {MAX_POINTS:,} points in one batch")
        if int(series.steps.min()) < 0 or int(series.steps.max()) > MAX_STEP:
            raise InvalidRequest(_steps_problem(key))
        if not bool(np.all(np.isfinite(series.times))):
            raise InvalidRequest(f"metrics.{key}.times: finite seconds since the epoch")
        batch[key] = series
    if not batch:
        raise InvalidRequest("metrics: at least one key")
    return batch
