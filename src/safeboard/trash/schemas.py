"""API shapes of the trash: deletes, the trash's list, a project's retention."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from safeboard.ids import ID_PATTERN
from safeboard.projects.retention import MAX_DAYS
from safeboard.schemas import Model, StrictModel
from safeboard.trash.service import MAX_BULK

__all__ = ["BulkDelete", "DeletedOut", "RetentionIn", "RetentionOut", "TrashOut", "TrashedOut"]

Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]


class BulkDelete(StrictModel):
    """Either ``ids`` (the dashboard's selected rows) or ``filter`` (the runs table's
    language; neither: every run of the project)."""

    ids: list[Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]] | None = Field(
        None, max_length=MAX_BULK
    )
    filter: str | None = Field(None, max_length=2000)
    dry_run: bool = Field(False, description="Only count what would be deleted.")
    purge: bool = Field(False, description="Purge at once instead of keeping in the trash.")


class DeletedOut(Model):
    count: int
    run_ids: list[str]
    purged: bool
    dry_run: bool = False
    cancelled_tasks: list[int] = Field(default_factory=list)


class TrashedOut(Model):
    id: str
    name: str
    status: str
    created_at: datetime
    deleted_at: datetime
    deleted_by: str
    purge_after: datetime


class TrashOut(Model):
    project: str
    trash_days: int
    runs: list[TrashedOut]


class RetentionIn(StrictModel):
    trash_days: Days | None = Field(
        None, description="Purge the trash after so many days; none: the server's default."
    )
    max_run_age_days: Days | None = Field(
        None, description="Move runs older than so many days to the trash; none: never."
    )


class RetentionOut(Model):
    project: str
    trash_days: int | None
    max_run_age_days: int | None
    effective_trash_days: int


class ProjectDeletedOut(Model):
    project: str
    runs: int = Field(
        description="How many runs went to the trash (came back, were purged) with it."
    )


class TrashedProjectOut(Model):
    name: str
    deleted_at: datetime
    deleted_by: str
