"""The ``tasks`` and ``task_attempts`` tables.

A task is what a user submitted (command, environment, GPUs, labels, priority, retry
policy) with its run; an attempt is one lease of it by one agent. ``tasks.attempt`` is the
number of the task's current attempt (0: never leased): every write from an agent names
its attempt, and one that is not the current, live one is refused (fencing).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime
from safeboard.vocabulary import TaskState

__all__ = [
    "AGENT_ID_LENGTH",
    "TASK_STATES",
    "TaskAttemptRow",
    "TaskCodeRow",
    "TaskLogBatchRow",
    "TaskRow",
    "TaskSecretRow",
    "TaskTokenRow",
]

TASK_STATES = tuple(state.value for state in TaskState)
_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in TASK_STATES))
AGENT_ID_LENGTH = 64  # room for an agent's id (safeboard.agents makes 12 hex digits)
TASK_ID = BigInteger().with_variant(Integer(), "sqlite")


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_STATE_CHECK, name="state"),
        CheckConstraint("gpus >= 0", name="gpus"),
        # The queue's order among queued tasks: highest priority, then oldest (lowest id).
        Index("ix_tasks_state_priority", "state", "priority", "id"),
        Index("ix_tasks_project_id", "project_id", "id"),
        Index("ix_tasks_run_id", "run_id"),  # a run's page links to its task
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(TASK_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    submitted_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    command: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    env: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    gpus: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    labels: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_lost_retries: Mapped[int] = mapped_column(Integer, nullable=False, default=2)
    retry_on_failure: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    retry_of: Mapped[int | None] = mapped_column(
        TASK_ID, ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True
    )
    reason: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The task's code: an archive uploaded to its project (``task_code``); None: no code.
    code_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TaskAttemptRow(Base):
    __tablename__ = "task_attempts"
    __table_args__ = (
        CheckConstraint(_STATE_CHECK, name="state"),
        # The reaper's question: live attempts whose lease has lapsed.
        Index("ix_task_attempts_state_lease", "state", "lease_expires_at"),
        Index("ix_task_attempts_agent_state", "agent_id", "state"),
    )

    task_id: Mapped[int] = mapped_column(
        TASK_ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The enrolled agent (migration 0019); agents are revoked, never deleted.
    agent_id: Mapped[str] = mapped_column(
        String(AGENT_ID_LENGTH), ForeignKey("agents.id"), nullable=False
    )
    gpu_uuids: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    leased_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    lease_expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(String(200), nullable=False, default="")


class TaskTokenRow(Base):
    """A task's token (S14): one per attempt, bound to the task, the attempt and its run;
    only the SHA-256 of its secret is kept. Revoked when the attempt ends; never valid
    past ``expires_at`` (the task's maximum duration from the lease)."""

    __tablename__ = "task_tokens"
    __table_args__ = (Index("ix_task_tokens_task", "task_id", "attempt"),)

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    task_id: Mapped[int] = mapped_column(
        TASK_ID, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class TaskCodeRow(Base):
    """A code archive (tar.gz) uploaded to a project, stored once per project and digest
    (a sweep of tasks with the same code uploads it once). Its bytes live in the blob
    store under ``blob_key`` (a server-made id, as artifacts' files)."""

    __tablename__ = "task_code"

    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_key: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    uploaded_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class TaskSecretRow(Base):
    """A task's secret (jobs/task_secrets.py): its value sealed with AES-256-GCM under the
    key ``key_id`` names (derived from ``secure.task_secrets_key``), the task id and the
    name bound to it as associated data. Never in clear here."""

    __tablename__ = "task_secrets"

    task_id: Mapped[int] = mapped_column(
        TASK_ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), nullable=False)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12), nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary(), nullable=False)


class TaskLogBatchRow(Base):
    """One batch of an attempt's output as its agent shipped it (docs/agents.md, "Logs").
    ``seq`` counts an attempt's batches from 1; the key makes a retried batch a no-op.
    ``content`` holds the kept lines, each its stream's letter (``o`` stdout, ``e``
    stderr) then its text, joined by newlines (a line holds no newline); ``dropped``
    counts the lines past the task's cap (``jobs.max_log_bytes``), not kept."""

    __tablename__ = "task_log_batches"

    task_id: Mapped[int] = mapped_column(
        TASK_ID, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_line: Mapped[int] = mapped_column(BigInteger, nullable=False)
    lines: Mapped[int] = mapped_column(Integer, nullable=False)
    dropped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
