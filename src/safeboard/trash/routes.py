"""HTTP for the trash: ``DELETE /api/v1/runs/{id}``, restore and purge, bulk delete,
``/api/v1/projects/{project}/trash`` and ``.../retention``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query

from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.errors import InvalidRequest
from safeboard.projects.retention import Retention
from safeboard.provision import provided
from safeboard.trash.schemas import (
    BulkDelete,
    DeletedOut,
    ProjectDeletedOut,
    RetentionIn,
    RetentionOut,
    TrashedOut,
    TrashedProjectOut,
    TrashOut,
)
from safeboard.trash.service import Deleted, TrashService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


def _deleted(deleted: Deleted, *, dry_run: bool = False) -> DeletedOut:
    return DeletedOut(count=len(deleted.run_ids), run_ids=deleted.run_ids,
                      purged=deleted.purged, dry_run=dry_run,
                      cancelled_tasks=deleted.cancelled_tasks)  # fmt: skip


@router.delete("/runs/{run_id}", response_model=DeletedOut)
def delete_run(
    run_id: str,
    purge: bool = Query(False, description="Purge at once instead of keeping it in the trash."),
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TrashService = provided(TrashService),
) -> DeletedOut:
    """Move a run to its project's trash (hidden everywhere, restorable until the
    retention period ends); a task running it is cancelled first."""
    return _deleted(service.delete(principal, run_id, purge=purge))


@router.post("/runs/{run_id}/restore", response_model=DeletedOut)
def restore_run(
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TrashService = provided(TrashService),
) -> DeletedOut:
    """Take a run out of the trash."""
    service.restore(principal, run_id)
    return DeletedOut(count=1, run_ids=[run_id], purged=False)


@router.post("/runs/{run_id}/purge", response_model=DeletedOut)
def purge_run(
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TrashService = provided(TrashService),
) -> DeletedOut:
    """Purge a run that is in the trash now: its metrics, artifacts and rows, for good."""
    service.purge(principal, run_id)
    return DeletedOut(count=1, run_ids=[run_id], purged=True)


@router.post("/projects/{project}/runs/delete", response_model=DeletedOut)
def delete_runs(
    project: str,
    body: BulkDelete,
    principal: Principal = requires_project(Permission.PROJECTS_WRITE),
    service: TrashService = provided(TrashService),
) -> DeletedOut:
    """Delete the runs named by ``ids``, or those matching ``filter``; ``dry_run`` counts
    them first (what a confirmation shows)."""
    if body.ids is not None:
        if body.filter is not None:
            raise InvalidRequest("ids or filter, not both")
        if body.dry_run:
            return DeletedOut(count=len(set(body.ids)), run_ids=sorted(set(body.ids)),
                              purged=False, dry_run=True)  # fmt: skip
        return _deleted(service.delete_ids(principal, project, body.ids, purge=body.purge))
    deleted = service.delete_matching(principal, project, body.filter, dry_run=body.dry_run,
                                      purge=body.purge)  # fmt: skip
    return _deleted(deleted, dry_run=body.dry_run)


@router.get("/projects/{project}/trash", response_model=TrashOut)
def project_trash(
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TrashService = provided(TrashService),
) -> TrashOut:
    """The project's trash, most recently deleted first, each with its purge date."""
    found, runs = service.trash(principal, project)
    _, kept = service.retention(principal, project)
    days = service.effective_trash_days(kept)
    return TrashOut(project=found.name, trash_days=days, runs=[
        TrashedOut(id=r.id, name=r.name, status=r.status, created_at=r.created_at,
                   deleted_at=r.deleted_at, deleted_by=r.deleted_by,
                   purge_after=r.deleted_at + timedelta(days=days))
        for r in runs
    ])  # fmt: skip


def _retention(service: TrashService, project: str, kept: Retention) -> RetentionOut:
    return RetentionOut(project=project, trash_days=kept.trash_days,
                        max_run_age_days=kept.max_run_age_days,
                        effective_trash_days=service.effective_trash_days(kept))  # fmt: skip


@router.get("/projects/{project}/retention", response_model=RetentionOut)
def get_retention(
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TrashService = provided(TrashService),
) -> RetentionOut:
    found, kept = service.retention(principal, project)
    return _retention(service, found.name, kept)


@router.put("/projects/{project}/retention", response_model=RetentionOut)
def put_retention(
    project: str,
    body: RetentionIn,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: TrashService = provided(TrashService),
) -> RetentionOut:
    """A project's retention (its owners): trash period and age limit."""
    kept = service.set_retention(principal, project, trash_days=body.trash_days,
                                 max_run_age_days=body.max_run_age_days)  # fmt: skip
    return _retention(service, project, kept)


@router.delete("/projects/{name}", response_model=ProjectDeletedOut)
def delete_project(
    name: str,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: TrashService = provided(TrashService),
) -> ProjectDeletedOut:
    """Move a project to the trash with its runs (its owners): hidden at once, restorable
    until its retention period ends, then purged whole."""
    # ``{name}``: the path of GET and PATCH /api/v1/projects/{name} (one path, one Allow).
    return ProjectDeletedOut(project=name, runs=service.delete_project(principal, name))


@router.post("/projects/{project}/restore", response_model=ProjectDeletedOut)
def restore_project(
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: TrashService = provided(TrashService),
) -> ProjectDeletedOut:
    """Take a project out of the trash with the runs that went with it."""
    return ProjectDeletedOut(project=project, runs=service.restore_project(principal, project))


@router.post("/projects/{project}/purge", response_model=ProjectDeletedOut)
def purge_project(
    project: str,
    principal: Principal = requires_project(Permission.PROJECTS_MANAGE),
    service: TrashService = provided(TrashService),
) -> ProjectDeletedOut:
    """Purge a project in the trash now (those who may restore it): its runs, metrics,
    artifacts, grants and keys bound to it, for good."""
    return ProjectDeletedOut(project=project, runs=service.purge_project(principal, project))


@router.get("/trash/projects", response_model=list[TrashedProjectOut])
def trashed_projects(
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: TrashService = provided(TrashService),
) -> list[TrashedProjectOut]:
    """Projects in the trash that you may restore (yours; an admin: all)."""
    return [TrashedProjectOut(name=p.name, deleted_at=p.deleted_at, deleted_by=p.deleted_by)
            for p in service.trashed_projects(principal)]  # fmt: skip
