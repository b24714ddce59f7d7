"""API shapes for metric batches and histories (columnar: one list per field)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from safeboard.schemas import Model, StrictModel
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH, metric_key_problem

__all__ = [
    "BucketsOut",
    "Columns",
    "HistoryOut",
    "IngestOut",
    "MetricBatch",
    "PackedHeader",
    "PointsOut",
    "TailOut",
]

JsonFloat = float | Literal["NaN", "Infinity", "-Infinity"]
MAX_STEP = 2**62
Step = Annotated[int, Field(ge=0, le=MAX_STEP)]


def _metric_key(key: str) -> str:
    problem = metric_key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


MetricKey = Annotated[
    str,
    # The rules are vocabulary.metric_key_problem's; the bounds also go in the API schema.
    Field(min_length=1, max_length=MAX_METRIC_KEY_LENGTH),
    AfterValidator(_metric_key),
]
MAX_POINTS = 1_000_000


class Columns(StrictModel):
    steps: list[Step] = Field(min_length=1, max_length=MAX_POINTS)
    times: list[float] = Field(min_length=1, max_length=MAX_POINTS, description="Unix seconds.")
    values: list[JsonFloat] = Field(min_length=1, max_length=MAX_POINTS)


BatchId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Unique per batch: a retried batch with the same id is stored once.",
    ),
]
MAX_KEYS = 1000


class MetricBatch(StrictModel):
    batch_id: BatchId
    metrics: dict[MetricKey, Columns] = Field(min_length=1, max_length=MAX_KEYS)


class PackedHeader(StrictModel):
    """The header of a binary columnar batch (``safeboard.wire``): per metric its key and
    point count, in the order of the columns that follow."""

    batch_id: BatchId
    metrics: list[tuple[MetricKey, Annotated[int, Field(ge=1, le=MAX_POINTS)]]] = Field(
        min_length=1, max_length=MAX_KEYS
    )


class IngestOut(Model):
    batch_id: str
    stored: int = Field(description="Points stored now (0 for a batch stored before).")
    duplicate: bool


class BucketsOut(Model):
    """A history downsampled: per bucket its last step (the x of the line), the last value
    (the line), and the min and max (the band)."""

    last_step: list[int]
    min: list[JsonFloat]
    max: list[JsonFloat]
    last: list[JsonFloat]


class TailOut(Model):
    """A live chart's tail: every point after ``after_step``, raw."""

    after_step: int
    steps: list[int]
    values: list[JsonFloat]


class HistoryOut(Model):
    """Per key asked, in that order: its history downsampled to ``buckets`` buckets, or
    with ``after_step`` its tail (a key with more new points than a tail holds comes back
    downsampled, to be drawn again)."""

    run_id: str
    buckets: int
    metrics: dict[str, BucketsOut | TailOut]


class PointsOut(Model):
    key: str
    steps: list[int]
    times: list[float]
    values: list[JsonFloat]
