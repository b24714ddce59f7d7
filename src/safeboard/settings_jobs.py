"""The ``jobs`` section of the settings tree (docs/agents.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JobSettings"]


class JobSettings(BaseModel):
    """Queued jobs: leases, the reaper, agents' long-polls (docs/agents.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease_seconds: int = Field(
        60,
        ge=5,
        le=3600,
        description=(
            "How long a lease lasts without a heartbeat. An agent that is silent this long "
            "has its attempt marked lost and the task requeued under its retry policy."
        ),
    )
    reaper_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often the reaper looks for lapsed leases.",
    )
    max_wait_seconds: float = Field(
        25.0,
        ge=0,
        le=60,
        description=(
            "The longest a long-poll waits: an agent's lease request for a task, a "
            "follower of a task's logs for lines (each asks for at most 25 s)."
        ),
    )
    poll_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description=(
            "A waiting lease request looks at the queue again at least this often, even "
            "without a wake-up notice (one lost while a PostgreSQL listener reconnects)."
        ),
    )
    max_code_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1024,
        le=4 * 1024**3,
        description=(
            "Largest code archive (compressed tar.gz) a task may carry; a larger upload "
            "gets 413, and `safeboard task submit` refuses it before sending, naming the "
            "biggest files to exclude."
        ),
    )
    max_log_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1024,
        le=2**40,
        description=(
            "The most output (bytes of text, all attempts together) kept of one task. Past "
            "it the first part is kept, the rest dropped and the task's log marked truncated "
            "(the agent keeps the whole file on its machine)."
        ),
    )
