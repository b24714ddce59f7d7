"""Artifact quotas, checked when an upload is declared, before any byte is sent (S12).

Two bounds, both over declared sizes of finished and unfinished uploads alike: the
project's (``artifacts.project_quota_bytes``) and the uploader's over all projects
(``artifacts.user_quota_bytes``), since a member may create projects (up to
``projects.max_per_member``) and so could otherwise multiply the project quota. Admins
count like everyone: the bound protects the disk, not a permission.
"""

from __future__ import annotations

from sqlalchemy import Connection

from safeboard.accounts import repository as accounts
from safeboard.artifacts import repository as artifacts
from safeboard.errors import PayloadTooLarge
from safeboard.projects.repository import Project
from safeboard.settings import ArtifactSettings

__all__ = ["ensure_room"]


def ensure_room(
    conn: Connection, settings: ArtifactSettings, project: Project, user_id: int, size: int
) -> None:
    """413 unless ``size`` more bytes fit both quotas. The caller holds the project's row
    lock; this takes the user's (PostgreSQL), so that one user's declarations in several
    projects at once count each other."""
    quota = settings.project_quota_bytes
    held = artifacts.project_bytes(conn, project.id) if quota else 0
    if quota and held + size > quota:
        raise PayloadTooLarge(
            f"project {project.name!r} holds {held} of its {quota}-byte artifact quota; "
            f"{size} more bytes do not fit (delete artifacts or raise "
            "artifacts.project_quota_bytes)"
        )
    quota = settings.user_quota_bytes
    if not quota:
        return
    accounts.lock_user(conn, user_id)
    held = artifacts.user_bytes(conn, user_id)
    if held + size > quota:
        raise PayloadTooLarge(
            f"you have uploaded {held} bytes of your {quota}-byte artifact quota; {size} "
            "more bytes do not fit (delete artifacts or raise artifacts.user_quota_bytes)"
        )
