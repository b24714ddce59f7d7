"""API shapes for histograms and text per step (issue 17)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from safeboard.metrics.histograms import BASIS_POINTS, MAX_HISTOGRAM_BUCKETS
from safeboard.metrics.schemas import BatchId, Step
from safeboard.schemas import Model, StrictModel
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH

__all__ = [
    "MAX_ENTRIES",
    "MAX_TEXT_CHARS",
    "DistributionOut",
    "HistogramIn",
    "HistogramOut",
    "StepBatch",
    "StepKeysOut",
    "TextIn",
    "TextsOut",
]

MAX_ENTRIES = 1000  # histograms and texts in one batch
MAX_TEXT_CHARS = 65_536
Key = Annotated[str, Field(min_length=1, max_length=MAX_METRIC_KEY_LENGTH)]
Time = Annotated[float, Field(description="Unix seconds.", allow_inf_nan=False)]


class HistogramIn(StrictModel):
    key: Key
    step: Step
    time: Time
    edges: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        description="Bucket edges, increasing: one more than counts.",
        max_length=MAX_HISTOGRAM_BUCKETS + 1,
    )
    counts: list[Annotated[float, Field(allow_inf_nan=False, ge=0)]] = Field(
        min_length=1, max_length=MAX_HISTOGRAM_BUCKETS
    )


class TextIn(StrictModel):
    key: Key
    step: Step
    time: Time
    text: str = Field(max_length=MAX_TEXT_CHARS, description="Shown escaped, never as HTML.")


class StepBatch(StrictModel):
    """Histograms and texts, stored exactly once per ``batch_id`` (R1)."""

    batch_id: BatchId
    histograms: list[HistogramIn] = Field(default_factory=list, max_length=MAX_ENTRIES)
    texts: list[TextIn] = Field(default_factory=list, max_length=MAX_ENTRIES)


class StepKeysOut(Model):
    """A run's histogram and text keys, with how many steps each holds."""

    run_id: str
    histograms: dict[str, int]
    texts: dict[str, int]


class DistributionOut(Model):
    """A histogram key over steps (at most ``steps`` of them, evenly spread): per step the
    values at ``basis_points`` (TensorBoard's distribution bands), null when empty."""

    key: str
    total_steps: int
    basis_points: list[int] = Field(default=list(BASIS_POINTS))
    steps: list[int]
    percentiles: list[list[float] | None]


class HistogramOut(Model):
    """One histogram: the one at ``step``, or the last before it."""

    key: str
    step: int
    time: float
    edges: list[float]
    counts: list[float]


class TextOut(Model):
    step: int
    time: float
    text: str


class TextsOut(Model):
    """A text key's entries, in step order, a page at a time."""

    key: str
    texts: list[TextOut]
    next_step: int | None = Field(description="Pass as ``start`` for the next page.")
