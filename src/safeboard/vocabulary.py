"""The words server and clients share: run statuses, artifact kinds, project roles, key
scopes, the id format and the rules for metric keys. Defined once here (bottom layer: it
imports nothing of safeboard), used by the server's schemas and models and by
``safeboard.client``, so the two cannot drift apart."""

from __future__ import annotations

import re
from enum import StrEnum

from safeboard.ids import ID_PATTERN, is_id

__all__ = [
    "CHARTS_KEY",
    "FINAL_STATUSES",
    "FINAL_TASK_STATES",
    "ID_PATTERN",
    "MAX_HISTORY_KEYS",
    "MAX_LOG_BATCH_BYTES",
    "MAX_LOG_BATCH_LINES",
    "MAX_LOG_LINE_BYTES",
    "MAX_METRIC_KEY_LENGTH",
    "SYSTEM_METRIC_PREFIX",
    "ArtifactKind",
    "ArtifactState",
    "KeyScope",
    "ProjectRole",
    "RunStatus",
    "TaskState",
    "is_id",
    "is_id_prefix",
    "is_system_metric",
    "metric_key_problem",
]


class RunStatus(StrEnum):
    QUEUED = "queued"  # the run of a queued task (safeboard.jobs), not yet started
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"


FINAL_STATUSES = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)
"""What a run may be finished as (``PATCH /api/v1/runs/{id}``)."""


class TaskState(StrEnum):
    """Where a queued task (safeboard.jobs) stands; docs/agents.md draws the transitions."""

    QUEUED = "queued"
    LEASED = "leased"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


FINAL_TASK_STATES = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST)
"""States a task ends in: nothing changes it after (``task retry`` makes a new task)."""

# A task's output as its agent ships it (docs/agents.md, "Logs"): a line longer than this
# many bytes is cut (and marked) by the agent; a batch holds at most this many lines and
# bytes of text (the server refuses more with 422; the agent sends at most 256 KiB).
MAX_LOG_LINE_BYTES = 16 * 1024
MAX_LOG_BATCH_LINES = 1000
MAX_LOG_BATCH_BYTES = 1024 * 1024


class ArtifactKind(StrEnum):
    FILE = "file"
    IMAGE = "image"
    MODEL = "model"
    DATASET = "dataset"
    TABLE = "table"


class ArtifactState(StrEnum):
    UPLOADING = "uploading"
    READY = "ready"


class ProjectRole(StrEnum):
    """A user's role in one project (grants); each includes the ones after it."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


class KeyScope(StrEnum):
    """What an API key may be used for: read, write and admin each include the ones before
    it; metrics (a scrape key: ``GET /metrics``) includes nothing else, and nothing else
    includes it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    METRICS = "metrics"


_PREFIX = re.compile(r"[0-9a-f]{1,32}")


def is_id_prefix(value: str) -> bool:
    """A run or artifact id as printed, perhaps shortened: 1 to 32 lowercase hex digits."""
    return _PREFIX.fullmatch(value) is not None


MAX_METRIC_KEY_LENGTH = 250
# A run's config key naming metrics drawn in one chart ({"acc": ["acc/train", "acc/val"]}):
# written by the TensorBoard drop-in's add_scalars, read by the run page (chart_groups.py).
CHARTS_KEY = "_charts"
# Metric keys in one history request (GET /runs/{id}/history): the server refuses more,
# clients ask in groups of this many (the dashboard's chart.js too: BATCH).
MAX_HISTORY_KEYS = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def metric_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a metric, or None. Keys were URL paths in the history API
    (``/metrics/train/loss``), so a "." or ".." part, which a browser resolves, is refused;
    they travel in its query now (``/history?metric=train/loss``) and the rule stays, so
    that every stored key stays valid. Any other character is allowed (``%``, ``?``,
    ``#``)."""
    if not 1 <= len(key) <= MAX_METRIC_KEY_LENGTH:
        return f"a metric key has 1 to {MAX_METRIC_KEY_LENGTH} characters"
    if _CONTROL.search(key):
        return "a metric key holds no control characters"
    if any(part in (".", "..") for part in key.split("/")):
        return 'a metric key has no "." or ".." between slashes'
    return None


# The SDK's system metrics (sdk/system.py) are logged under this prefix; the run page and
# the compare view chart them apart from the training metrics (docs/sdk.md).
SYSTEM_METRIC_PREFIX = "system/"


def is_system_metric(key: str) -> bool:
    return key.startswith(SYSTEM_METRIC_PREFIX)
