"""HTTP for the audit log: ``GET /api/v1/audit`` (admins)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request

from safeboard.audit import service
from safeboard.audit.schemas import AuditOut
from safeboard.auth.dependencies import requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


@router.get("/audit", response_model=list[AuditOut])
def list_audit(
    request: Request,
    since: datetime | None = None,
    action: str | None = Query(None, max_length=64),
    after_id: int | None = Query(None, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = requires(Permission.AUDIT_READ),
) -> list[AuditOut]:
    """Audit entries, oldest first; page with ``after_id``."""
    entries = service.list_entries(
        request.app.state.engine, since=since, action=action, limit=limit, after_id=after_id
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
        )  # fmt: skip
        for e in entries
    ]
