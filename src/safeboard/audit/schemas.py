"""API shape of audit entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from safeboard.schemas import Model

__all__ = ["AuditOut"]


class AuditOut(Model):
    id: int
    at: datetime
    action: str
    actor: str
    target: str
    outcome: str
    address: str
    detail: dict[str, Any]
    hash: str
