"""Metric storage: points in columnar chunks (one row per key per batch), a summary per
key, and the ids of the batches already stored (exactly once, R1).

A chunk holds three little-endian arrays: steps (int64), wall times (float64, seconds
since the epoch) and values (float64, NaN and infinities included). One row per key per
batch keeps ingest to a few inserts per request, and a 1,000,000-point history is a few
hundred rows to read and decode with numpy (P1, P2).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, Blob, UtcDateTime
from safeboard.vocabulary import MAX_METRIC_KEY_LENGTH

__all__ = [
    "HistogramRow",
    "IngestBatchRow",
    "MetricChunkRow",
    "MetricRollupRow",
    "MetricSummaryRow",
    "StepTextRow",
]


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


class MetricChunkRow(Base):
    __tablename__ = "metric_chunks"
    __table_args__ = (Index("ix_metric_chunks_run_key_step", "run_id", "key", "first_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), nullable=False)
    key: Mapped[str] = mapped_column(String(MAX_METRIC_KEY_LENGTH), nullable=False)
    first_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    steps: Mapped[bytes] = mapped_column(Blob, nullable=False)
    times: Mapped[bytes] = mapped_column(Blob, nullable=False)
    values: Mapped[bytes] = mapped_column(Blob, nullable=False)


class MetricSummaryRow(Base):
    """Per run and key. NULL min/max: no finite value yet; NULL last_value: it was NaN.

    ``rolled_to``: the key's rollups hold every point below this step (rounded down to
    the rollup's block, ``2 ** rollup_shift`` steps); a batch reaching below it lowers it
    in the same upsert, so rollups are never trusted for steps that changed since
    (metrics/rollups.py). ``rollup_shift`` is chosen at the first roll, NULL until then.
    """

    __tablename__ = "metric_summaries"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_METRIC_KEY_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_time: Mapped[float] = mapped_column(Float, nullable=False)
    last_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    min_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    rolled_to: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # The widest step range of one chunk: a read of steps from s on looks at chunks from
    # s - chunk_span on (the index holds first_step only).
    chunk_span: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    rollup_shift: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)


class MetricRollupRow(Base):
    """A summary of one aligned block of steps of one key: steps ``block << level`` to
    ``((block + 1) << level) - 1``, at levels ``rollup_shift + 2 i`` (metrics/rollups.py).
    Only blocks holding points have rows. NULL min/max: only NaN; NULL last_value: NaN."""

    __tablename__ = "metric_rollups"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_METRIC_KEY_LENGTH), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    min_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float(53), nullable=True)


class IngestBatchRow(Base):
    """Batches already stored: a retried batch id is acknowledged and not stored again."""

    __tablename__ = "ingest_batches"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class HistogramRow(Base):
    """One histogram of one key at one step (issue 17): bucket edges (n + 1) and counts
    (n), little-endian float64 arrays (metrics/histograms.py). Logged again at the same
    step: the later one replaces it."""

    __tablename__ = "histograms"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_METRIC_KEY_LENGTH), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[float] = mapped_column(Float(53), nullable=False)
    total: Mapped[float] = mapped_column(Float(53), nullable=False)  # the sum of the counts
    edges: Mapped[bytes] = mapped_column(Blob, nullable=False)
    counts: Mapped[bytes] = mapped_column(Blob, nullable=False)


class StepTextRow(Base):
    """One text of one key at one step (issue 17), shown escaped, never as HTML."""

    __tablename__ = "step_texts"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_METRIC_KEY_LENGTH), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[float] = mapped_column(Float(53), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
