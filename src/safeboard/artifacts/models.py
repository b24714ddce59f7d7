"""The artifact tables. A row is made when an upload is declared (name, size, SHA-256) and
turns ``ready`` once every byte is stored and the checksum matched; one left ``uploading``
with no activity for ``artifacts.incomplete_upload_hours`` is deleted (expiry), leaving a
tombstone so that its id answers 410 Gone rather than 404."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime
from safeboard.vocabulary import ArtifactKind, ArtifactState

__all__ = ["KINDS", "STATES", "ArtifactRow", "ArtifactTombstoneRow"]

KINDS = tuple(kind.value for kind in ArtifactKind)
STATES = tuple(state.value for state in ArtifactState)


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("run_id", "upload_id", name="uq_artifacts_run_upload"),
        Index("ix_artifacts_run", "run_id", "created_at"),
        Index("ix_artifacts_project", "project_id"),
        Index("ix_artifacts_created_by", "created_by"),  # the per-user quota
        Index("ix_artifacts_state_updated", "state", "updated_at"),  # the expiry sweep
        _one_of("kind", KINDS),
        _one_of("state", STATES),
        CheckConstraint("received <= size", name="received"),
    )

    # Server-made (32 hex digits): also the storage key. Client names are metadata only.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    # The run's project, kept here for the quota sum.
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(500), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    # Bytes stored so far, as of the last upload request that ended.
    received: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The client's id for this upload: declaring it again resumes instead of duplicating.
    upload_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    ready_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Last activity: the declaration (also a repeated one), each upload request that ended,
    # the turn to ready. An unfinished upload idle for artifacts.incomplete_upload_hours
    # expires.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class ArtifactTombstoneRow(Base):
    """An upload the server expired: its id answers 410 Gone ("declare it again") to whoever
    may still write its run, where a deleted or unknown id answers 404. Gone with its run."""

    __tablename__ = "artifact_tombstones"
    __table_args__ = (Index("ix_artifact_tombstones_run", "run_id"),)  # the run's cascade

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the artifact's id
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    expired_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
