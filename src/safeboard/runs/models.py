"""The ``runs`` and ``run_tags`` tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.documents import MAX_TAG_VALUE_CHARS
from safeboard.storage import Base, UtcDateTime
from safeboard.vocabulary import RunStatus

__all__ = ["JSON_DOCUMENT", "RunRow", "RunTagRow"]

# JSON on SQLite (text, queried with json_extract), JSONB on PostgreSQL (indexable, ->>).
JSON_DOCUMENT = JSON().with_variant(postgresql.JSONB(), "postgresql")

RUN_STATUSES = tuple(status.value for status in RunStatus)
# "queued": the run of a task that waits in the queue (safeboard.jobs; migration 0014).
RUN_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s}'" for s in RUN_STATUSES))


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(RUN_STATUS_CHECK, name="status"),
        # A project's runs newest first: the run list's default order, a page at a time.
        Index("ix_runs_project_created", "project_id", "created_at", "id"),
    )

    # 32 hex characters, made by the client (so an offline run keeps its id) or the server.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=RunStatus.RUNNING.value)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False, default=dict)
    system: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, nullable=False, default=dict)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # In its project's trash since (NULL: not deleted): hidden from every read, purged by
    # the retention sweep (safeboard.trash; migration 0027). ``deleted_by``: the actor.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    deleted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


TAG_KEY_LENGTH = 100  # the columns' lengths; the API refuses longer (runs/schemas.py)
TAG_VALUE_LENGTH = MAX_TAG_VALUE_CHARS  # the bound of safeboard.documents


class RunTagRow(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH), nullable=False, default="")
