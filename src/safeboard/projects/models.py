"""Projects and the grants that give users a role in them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime

__all__ = ["ProjectGrantRow", "ProjectRenameRow", "ProjectRow"]


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # Retention (safeboard.trash; migration 0027): purge the trash after so many days
    # (NULL: the server's ``retention.trash_days``); trash runs older than so many days
    # (NULL: never).
    trash_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_run_age_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Deleted (in the trash with its runs) since, by whom; NULL: not deleted. Its name
    # stays taken until it is purged, so that a restore finds it free.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class ProjectGrantRow(Base):
    __tablename__ = "project_grants"
    __table_args__ = (CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role"),)

    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)


class ProjectRenameRow(Base):
    """A name a project had before a rename (migration 0028): links and clients that use
    it are sent to the project's current name (``projects.lifecycle.renamed_to``). One row
    a name: the project that gave it up last; a project that takes the name (created or
    renamed to it) removes the row, and a purge removes its project's rows."""

    __tablename__ = "project_renames"

    old_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    renamed_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
