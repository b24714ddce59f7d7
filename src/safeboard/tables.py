"""Every table of every domain, imported so that ``Base.metadata`` is complete.

Migrations and the models-versus-migrations check import this module first.
"""

from __future__ import annotations

from safeboard.accounts.models import (
    ApiKeyRow,
    LoginThrottleRow,
    OneTimeTokenRow,
    SessionRow,
    UserRow,
)
from safeboard.agents.models import AgentJoinTokenRow, AgentRow
from safeboard.artifacts.models import ArtifactRow, ArtifactTombstoneRow
from safeboard.audit.models import AuditRow
from safeboard.jobs.models import (
    TaskAttemptRow,
    TaskCodeRow,
    TaskLogBatchRow,
    TaskRow,
    TaskTokenRow,
)
from safeboard.metrics.models import (
    HistogramRow,
    IngestBatchRow,
    MetricChunkRow,
    MetricSummaryRow,
    StepTextRow,
)
from safeboard.projects.models import ProjectGrantRow, ProjectRow
from safeboard.runs.models import RunRow, RunTagRow
from safeboard.storage import Base, InstanceRow
from safeboard.storage.live_events import LiveEventRow

__all__ = [
    "AgentJoinTokenRow",
    "AgentRow",
    "ApiKeyRow",
    "ArtifactRow",
    "ArtifactTombstoneRow",
    "AuditRow",
    "Base",
    "HistogramRow",
    "IngestBatchRow",
    "InstanceRow",
    "LiveEventRow",
    "LoginThrottleRow",
    "MetricChunkRow",
    "MetricSummaryRow",
    "OneTimeTokenRow",
    "ProjectGrantRow",
    "ProjectRow",
    "RunRow",
    "RunTagRow",
    "SessionRow",
    "StepTextRow",
    "TaskAttemptRow",
    "TaskCodeRow",
    "TaskLogBatchRow",
    "TaskRow",
    "TaskTokenRow",
    "UserRow",
]
