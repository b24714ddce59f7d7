"""Queries on ``task_code``: the code archives uploaded to a project, one row per
(project, SHA-256), naming the blob that holds the bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from safeboard.jobs.models import TaskCodeRow

__all__ = ["CodeArchive", "get_code", "insert_code"]

_c = cast(sa.Table, TaskCodeRow.__table__)


@dataclass(frozen=True)
class CodeArchive:
    project_id: int
    sha256: str
    blob_key: str
    size: int
    uploaded_by: int | None
    created_at: datetime


def get_code(conn: Connection, project_id: int, sha256: str) -> CodeArchive | None:
    row = conn.execute(
        sa.select(_c).where(_c.c.project_id == project_id, _c.c.sha256 == sha256)
    ).first()
    return None if row is None else CodeArchive(**row._mapping)


def insert_code(conn: Connection, archive: CodeArchive) -> bool:
    """Record ``archive``; False when the project holds this digest already (a
    concurrent upload of the same code won: its blob is the one kept)."""
    values = {
        "project_id": archive.project_id,
        "sha256": archive.sha256,
        "blob_key": archive.blob_key,
        "size": archive.size,
        "uploaded_by": archive.uploaded_by,
        "created_at": archive.created_at,
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    query = insert(_c).values(**values).on_conflict_do_nothing().returning(_c.c.sha256)
    return conn.execute(query).first() is not None
