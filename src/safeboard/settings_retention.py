"""The ``retention`` section of the settings tree (docs/operations.md, "Deletion and
retention")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RetentionSettings"]


class RetentionSettings(BaseModel):
    """The trash: how long deleted runs are kept, and how the sweep purges them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trash_days: int = Field(
        30,
        ge=0,
        le=36500,
        description=(
            "A deleted run stays in its project's trash this many days (restorable), then "
            "the sweep purges it. A project's own setting (`safeboard project retention`) "
            "overrides it; 0 purges at the next sweep."
        ),
    )
    sweep_minutes: float = Field(
        60.0,
        gt=0,
        le=1440,
        description=(
            "How often the retention sweep runs: purges trashed runs past their project's "
            "period and trashes runs older than a project's `max_run_age_days`."
        ),
    )
    purge_batch_rows: int = Field(
        500,
        ge=1,
        le=100_000,
        description=(
            "Rows one purge transaction deletes at most (metric chunks, summaries, "
            "artifacts' rows, ...): each batch is its own short transaction, so a purge "
            "never holds the SQLite writer long and ingest goes on meanwhile."
        ),
    )
