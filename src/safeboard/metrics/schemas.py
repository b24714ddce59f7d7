"""API shapes for metric batches and histories (columnar: one list per field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue

from safeboard.metrics.batches import BATCH_ID_PATTERN, MAX_KEYS, MAX_POINTS, MAX_STEP
from safeboard.schemas import Model, StrictModel
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH

__all__ = [
    "MAX_POINTS",
    "MAX_STEP",
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
Step = Annotated[int, Field(json_schema_extra={"minimum": 0, "maximum": MAX_STEP})]


def _documented(**bounds: JsonValue) -> Any:
    """Bounds written in the API schema only: they are enforced, with the same messages
    for the JSON and the packed body, by ``metrics.batches.validate_batch``."""
    return Field(json_schema_extra=bounds)


_COLUMN: dict[str, JsonValue] = {"minItems": 1, "maxItems": MAX_POINTS}


class Columns(StrictModel):
    steps: list[Step] = _documented(**_COLUMN)
    times: list[float] = Field(description="Unix seconds.", json_schema_extra=_COLUMN)
    values: list[JsonFloat] = _documented(**_COLUMN)


BatchId = Annotated[
    str,
    Field(
        description="Unique per batch: a retried batch with the same id is stored once.",
        json_schema_extra={"pattern": BATCH_ID_PATTERN},
    ),
]


class MetricBatch(StrictModel):
    """The shape of a JSON batch; what makes it valid is ``validate_batch``'s."""

    batch_id: BatchId
    metrics: dict[str, Columns] = _documented(
        minProperties=1,
        maxProperties=MAX_KEYS,
        propertyNames={"minLength": 1, "maxLength": MAX_METRIC_KEY_LENGTH},
    )


class PackedHeader(StrictModel):
    """The header of a binary columnar batch (``safeboard.wire``): per metric its key and
    point count, in the order of the columns that follow."""

    batch_id: str
    metrics: list[tuple[str, Annotated[int, Field(ge=0)]]]


class CompactHeader(StrictModel):
    """The header of a compact batch (``safeboard.wire``, ``SBC2``): per metric its key,
    point count, and the bytes of its steps and values columns."""

    batch_id: str
    metrics: list[
        tuple[str, Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)],
              Annotated[int, Field(ge=0)]]
    ]  # fmt: skip


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
