"""What is left of an artifact the server expired, and what its id answers: 410 Gone for an
upload the server expired (the client declares it again), 404 for one deleted or never
there. Decided by the artifacts' own tombstones (``repository.bury`` at expiry), never by
the audit log."""

from __future__ import annotations

from sqlalchemy import Connection

from safeboard.artifacts import repository as artifacts
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import Gone, NotFound
from safeboard.ids import is_id
from safeboard.runs.access import run_for

__all__ = ["missing"]


def missing(
    conn: Connection, principal: Principal, artifact_id: str, permission: Permission
) -> NotFound:
    """Why an artifact id has no row: Gone (410) for an upload the server expired, if the
    principal still holds ``permission`` on its run; else the usual 404 (a deletion, or
    never there). A client resumes a Gone upload by declaring it again, and leaves a
    deleted one deleted."""
    if is_id(artifact_id):
        run_id = artifacts.expired_run(conn, artifact_id)
        if run_id is not None:
            try:
                run_for(conn, principal, run_id, permission)
            except NotFound:
                return NotFound("no such artifact")
            return Gone(
                "this upload expired: it was idle longer than the server keeps unfinished "
                "uploads (artifacts.incomplete_upload_hours); declare it again to start over"
            )
    return NotFound("no such artifact")
