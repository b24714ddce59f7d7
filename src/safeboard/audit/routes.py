"""HTTP for the audit log: ``GET /api/v1/audit`` (admins)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import APIRouter, Query

from safeboard.audit import service
from safeboard.audit.schemas import AuditOut
from safeboard.auth.dependencies import requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest
from safeboard.provision import provided
from safeboard.schemas import ROW_ID_MAX

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
# Strictly a timestamp with a zone: no bare numbers, no naive times.
_ISO_WITH_ZONE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


def _timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise InvalidRequest("since: not a real date and time") from None
    except OverflowError:  # a zone that moves it past the calendar's first or last day
        raise InvalidRequest("since: outside the calendar once in UTC") from None


@router.get("/audit", response_model=list[AuditOut])
def list_audit(
    since: str | None = Query(
        None, pattern=_ISO_WITH_ZONE, description="ISO-8601 with a zone: 2026-11-23T00:00:00Z."
    ),
    action: str | None = Query(None, max_length=64),
    after_id: int | None = Query(None, ge=0, le=ROW_ID_MAX),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = requires(Permission.AUDIT_READ),
    engine: sa.Engine = provided(sa.Engine),
) -> list[AuditOut]:
    """Audit entries, oldest first; page with ``after_id``."""
    entries = service.list_entries(
        engine,
        since=_timestamp(since),
        action=action,
        limit=limit,
        after_id=after_id,
    )
    return [
        AuditOut(
            id=e.id,
            at=e.at,
            action=e.action,
            actor=e.actor,
            target=e.target,
            outcome=e.outcome,
            address=e.address,
            detail=dict(e.detail),
            hash=e.hash,
        )
        for e in entries
    ]
