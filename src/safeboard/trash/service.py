"""Trash use cases: delete runs (to their project's trash), restore, purge, bulk delete by
filter, a project's retention, and the sweep that applies it.

A run in the trash is hidden from every read (``runs.repository.LIVE``): lists, search,
compare, live streams, metric reads and writes, artifact downloads all answer as for no
such run. Purging removes its rows in bounded transactions (``storage.purge``) after its
artifacts' files. Who may: an owner or editor of the project (``projects:write``), never a
task's token. Every move is audited: deleted, restored, purged, retention changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from safeboard.artifacts import repository as artifacts
from safeboard.artifacts.store import ArtifactStore
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.authorizer import allowed_in_project
from safeboard.auth.permissions import Permission, Role
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import Conflict, Forbidden, InvalidRequest, NotFound
from safeboard.events import Event, EventBus
from safeboard.jobs import repository as tasks
from safeboard.jobs.service import TaskService
from safeboard.projects import lifecycle as project_bin
from safeboard.projects import repository as project_grants
from safeboard.projects import retention as retentions
from safeboard.projects.access import may_restore, project_and_grant, project_by_name
from safeboard.projects.lifecycle import TrashedProject
from safeboard.projects.repository import Project
from safeboard.projects.retention import MAX_DAYS, Retention
from safeboard.runs import trash as bin_
from safeboard.runs.access import run_for
from safeboard.runs.trash import Trashed
from safeboard.settings_retention import RetentionSettings
from safeboard.storage import writer
from safeboard.storage.purge import purge_row
from safeboard.vocabulary import FINAL_TASK_STATES

__all__ = ["SWEEP_LOCK", "Deleted", "TrashService"]

log = logging.getLogger("safeboard.trash")

SYSTEM_ACTOR = "system:retention"
MAX_BULK = 10_000  # runs one bulk delete moves at most
MAX_LISTED = 1_000
_ARTIFACT_PAGE = 200
SWEEP_LOCK = 0x5AFEB0A2D  # PostgreSQL advisory lock: one replica sweeps at a time
_FINAL = {state.value for state in FINAL_TASK_STATES}


@dataclass(frozen=True)
class Deleted:
    """What a delete did: the runs moved to the trash (or purged), tasks cancelled."""

    run_ids: list[str]
    purged: bool
    cancelled_tasks: list[int]


def _refuse_task_token(principal: Principal) -> None:
    if principal.run_id is not None:
        raise Forbidden("a task's token cannot delete runs")


class TrashService:
    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        settings: RetentionSettings,
        tasks: TaskService,
        *,
        events: EventBus | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.store = store
        self.settings = settings
        self.task_service = tasks
        self.events = events
        self.clock = clock

    # -- moving runs in and out -------------------------------------------------------

    def delete(self, principal: Principal, run_id: str, *, purge: bool = False) -> Deleted:
        """Move a run to its project's trash (``purge``: and purge it now). A task that
        runs it is cancelled first."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            run, project = run_for(conn, principal, run_id, Permission.PROJECTS_WRITE)
        return self._delete(principal, project, [run.id], purge=purge)

    def delete_matching(
        self, principal: Principal, project_name: str, filter_text: str | None, *,
        dry_run: bool, purge: bool = False,
    ) -> Deleted:  # fmt: skip
        """Every live run of the project that matches the filter (the runs table's
        language; none: every run), at most MAX_BULK; ``dry_run``: only count them."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_WRITE)
            ids = bin_.matching(conn, project.id, filter_text, MAX_BULK + 1)
        if len(ids) > MAX_BULK:
            raise InvalidRequest(f"filter: more than {MAX_BULK} runs match; narrow it")
        if dry_run:
            return Deleted(ids, purged=False, cancelled_tasks=[])
        return self._delete(principal, project, ids, purge=purge)

    def delete_ids(
        self, principal: Principal, project_name: str, run_ids: list[str], *, purge: bool = False
    ) -> Deleted:
        """These runs of the project (the dashboard's selected rows); an id that is not a
        live run of it: NotFound, and nothing is moved."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_WRITE)
            for run_id in run_ids:
                run, _ = run_for(conn, principal, run_id, Permission.PROJECTS_WRITE)
                if run.project_id != project.id:
                    raise NotFound("no such run")
        return self._delete(principal, project, list(dict.fromkeys(run_ids)), purge=purge)

    def _delete(
        self, principal: Principal, project: Project, run_ids: list[str], *, purge: bool
    ) -> Deleted:
        cancelled = self._cancel_tasks(principal, run_ids)
        moved: list[str] = []
        pending: list[Event] = []
        for start in range(0, len(run_ids), MAX_LISTED):  # short transactions
            chunk = run_ids[start : start + MAX_LISTED]
            with self.tx.begin() as conn:
                now = self.clock()
                done = bin_.to_trash(conn, chunk, principal.actor, now)
                for run_id in done:
                    audit.append(conn, action=AuditAction.RUN_DELETED, actor=principal.actor,
                                 target=f"run:{run_id}",
                                 detail={"project": project.name, "purge": purge})  # fmt: skip
                    event = Event("run", project.id, run_id, {"status": "deleted"})
                    self._record(conn, event, pending)
                moved.extend(done)
            self._deliver(pending)
        if purge:
            for run_id in moved:
                self._purge(principal.actor, project.id, run_id)
        return Deleted(moved, purged=purge, cancelled_tasks=cancelled)

    def _cancel_tasks(self, principal: Principal, run_ids: list[str]) -> list[int]:
        """Cancel the unfinished tasks that run these runs (the agent stops the process)."""
        with self.engine.connect() as conn:
            running = [t for t in (tasks.task_of_run(conn, r) for r in run_ids)
                       if t is not None and t.state not in _FINAL]  # fmt: skip
        for task in running:
            try:
                self.task_service.cancel(principal, task.id)
            except Conflict:  # it finished meanwhile
                continue
        return [t.id for t in running]

    def _record(self, conn: Connection, event: Event, pending: list[Event]) -> None:
        """A live update in the change's transaction; on SQLite handed to this process's
        streams after the commit (``_deliver``)."""
        if self.events is not None and not self.events.publish_at_commit(conn, event):
            pending.append(event)

    def _deliver(self, pending: list[Event]) -> None:
        if self.events is not None:
            for event in pending:
                self.events.publish(event)
        pending.clear()

    def restore(self, principal: Principal, run_id: str) -> Trashed:
        """Take a run out of the trash: it is listed and readable again."""
        _refuse_task_token(principal)
        pending: list[Event] = []
        with self.tx.begin() as conn:
            found = self._trashed(conn, principal, run_id)
            bin_.put_back(conn, run_id)
            audit.append(conn, action=AuditAction.RUN_RESTORED, actor=principal.actor,
                         target=f"run:{run_id}")  # fmt: skip
            event = Event("run", found.project_id, run_id, {"status": found.status})
            self._record(conn, event, pending)
        self._deliver(pending)
        return found

    def purge(self, principal: Principal, run_id: str) -> None:
        """Purge a run in the trash now (NotFound for a live run: delete it first)."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            found = self._trashed(conn, principal, run_id)
        self._purge(principal.actor, found.project_id, run_id)

    def _trashed(self, conn: Connection, principal: Principal, run_id: str) -> Trashed:
        found = bin_.trashed(conn, run_id)
        if found is None:
            raise NotFound("no such run in the trash")
        try:
            project_and_grant(conn, principal, found.project_id, Permission.PROJECTS_READ)
        except NotFound:
            raise NotFound("no such run in the trash") from None
        project_and_grant(conn, principal, found.project_id, Permission.PROJECTS_WRITE)
        return found

    def trash(self, principal: Principal, project_name: str) -> tuple[Project, list[Trashed]]:
        """The project's trash, most recently deleted first (readers may look)."""
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_READ)
            return project, bin_.trash_of(conn, project.id, MAX_LISTED)

    def permissions(self, principal: Principal, project_id: int) -> set[Permission]:
        """Which of write and manage the principal holds in the project (what a page
        offers: restore and purge; rename, delete and retention)."""
        with self.engine.connect() as conn:
            grant = project_grants.role_of(conn, project_id, principal.user_id)
        wanted = (Permission.PROJECTS_WRITE, Permission.PROJECTS_MANAGE)
        if principal.run_id is not None:
            return set()
        return {p for p in wanted if allowed_in_project(principal, p, project_id, grant)}

    # -- projects ---------------------------------------------------------------------

    def delete_project(self, principal: Principal, name: str) -> int:
        """Move a project to the trash with its runs (owners, admins): hidden at once, its
        tasks cancelled first; restorable until the retention period ends. Returns how
        many runs went with it."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, name, Permission.PROJECTS_MANAGE)
            ids = bin_.matching(conn, project.id, None, MAX_BULK * 10)
        self._cancel_tasks(principal, ids)
        with self.tx.begin() as conn:
            now = self.clock()
            if not project_bin.to_trash(conn, project.id, principal.actor, now):
                raise NotFound("no such project")
            moved = bin_.project_to_trash(conn, project.id, principal.actor, now)
            audit.append(conn, action=AuditAction.PROJECT_DELETED, actor=principal.actor,
                         target=f"project:{project.id}",
                         detail={"name": project.name, "runs": moved})  # fmt: skip
        return moved

    def restore_project(self, principal: Principal, name: str) -> int:
        """Take a project out of the trash with the runs that went with it (its owners,
        admins). Returns how many runs came back."""
        _refuse_task_token(principal)
        with self.tx.begin() as conn:
            found = project_bin.trashed_named(conn, name)
            if found is None or not may_restore(conn, principal, found.id):
                raise NotFound("no such project in the trash")
            project_bin.put_back(conn, found.id)
            back = bin_.project_put_back(conn, found.id, found.deleted_at)
            audit.append(conn, action=AuditAction.PROJECT_RESTORED, actor=principal.actor,
                         target=f"project:{found.id}",
                         detail={"name": found.name, "runs": back})  # fmt: skip
        return back

    def trashed_projects(self, principal: Principal) -> list[TrashedProject]:
        """Projects in the trash this principal may restore (its owners; admins: all)."""
        _refuse_task_token(principal)
        owner = None if principal.role is Role.ADMIN else principal.user_id
        with self.engine.connect() as conn:
            found = project_bin.trashed_projects(conn, owner)
        if principal.project_id is not None:
            found = [p for p in found if p.id == principal.project_id]
        return found

    def purge_project(self, principal: Principal, name: str) -> int:
        """Purge a project in the trash now, with all its runs (those who may restore it:
        its owners, admins); audited with who asked. Returns how many runs went."""
        _refuse_task_token(principal)
        with self.engine.connect() as conn:
            found = project_bin.trashed_named(conn, name)
            if found is None or not may_restore(conn, principal, found.id):
                raise NotFound("no such project in the trash")
        runs = self._purge_project(found.id, None, actor=principal.actor)
        if runs is None:
            raise Conflict(f"project {name} was restored while it was being purged: the runs "
                           "purged before that are gone, the others are back with it")  # fmt: skip
        return runs

    def _purge_project(
        self, project_id: int, stop: threading.Event | None, *, actor: str = SYSTEM_ACTOR
    ) -> int | None:
        """Every run of it (a batch a transaction), then its row and what else it holds.
        Returns how many runs it purged; None when the project was restored meanwhile (it
        stops there: a restored project and its runs stay)."""
        runs = 0
        while True:
            with self.engine.connect() as conn:
                ids = bin_.of_project(conn, project_id, MAX_LISTED)
            for run_id in ids:
                if not self._still_in_trash(project_id):
                    return None
                self._purge(actor, project_id, run_id, stop)
            runs += len(ids)
            if len(ids) < MAX_LISTED:
                break
        if not self._still_in_trash(project_id):
            return None
        rows = purge_row(self.engine, "projects", project_id,
                         batch=self.settings.purge_batch_rows, stop=stop)  # fmt: skip
        if rows:
            with self.tx.begin() as conn:
                audit.append(conn, action=AuditAction.PROJECT_PURGED, actor=actor,
                             target=f"project:{project_id}", detail={"rows": rows})  # fmt: skip
        return runs

    def _still_in_trash(self, project_id: int) -> bool:
        with self.engine.connect() as conn:
            return project_bin.in_trash(conn, project_id)

    # -- purging ----------------------------------------------------------------------

    def _purge(
        self, actor: str, project_id: int, run_id: str, stop: threading.Event | None = None
    ) -> None:
        """Files first (a row without its file is harmless in the trash), then the rows,
        a batch a transaction; audited once the run is gone."""
        after: tuple[datetime, str] | None = None
        files = 0
        while True:
            with self.engine.connect() as conn:
                page = artifacts.list_for_run(conn, run_id, after=after, limit=_ARTIFACT_PAGE)
            for artifact in page:
                try:
                    self.store.delete(artifact.id)
                    files += 1
                except Conflict:  # an upload holds it; the row goes, the file stays busy
                    log.warning("run %s: artifact %s busy while purged", run_id, artifact.id)
            if len(page) < _ARTIFACT_PAGE:
                break
            after = (page[-1].created_at, page[-1].id)
        rows = purge_row(self.engine, "runs", run_id, batch=self.settings.purge_batch_rows,
                         stop=stop)  # fmt: skip
        if rows:
            with self.tx.begin() as conn:
                audit.append(conn, action=AuditAction.RUN_PURGED, actor=actor,
                             target=f"run:{run_id}",
                             detail={"project_id": project_id, "rows": rows,
                                     "files": files})  # fmt: skip

    # -- retention --------------------------------------------------------------------

    def retention(self, principal: Principal, project_name: str) -> tuple[Project, Retention]:
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_READ)
            found = retentions.retention_of(conn, project.id)
        assert found is not None  # noqa: S101  (the project was just read)
        return project, found

    def effective_trash_days(self, kept: Retention) -> int:
        return self.settings.trash_days if kept.trash_days is None else kept.trash_days

    def set_retention(
        self, principal: Principal, project_name: str, *,
        trash_days: int | None, max_run_age_days: int | None,
    ) -> Retention:  # fmt: skip
        """A project's retention (owner: ``projects:manage``); None: the server's default
        (trash) or never (age)."""
        _refuse_task_token(principal)
        for name, days in (("trash_days", trash_days), ("max_run_age_days", max_run_age_days)):
            if days is not None and not 0 <= days <= MAX_DAYS:
                raise InvalidRequest(f"{name}: 0 to {MAX_DAYS} days, or none")
        with self.tx.begin() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_MANAGE)
            retentions.set_retention(conn, project.id, trash_days=trash_days,
                                     max_run_age_days=max_run_age_days)  # fmt: skip
            audit.append(conn, action=AuditAction.RETENTION_CHANGED, actor=principal.actor,
                         target=f"project:{project.name}",
                         detail={"trash_days": trash_days,
                                 "max_run_age_days": max_run_age_days})  # fmt: skip
            found = retentions.retention_of(conn, project.id)
        assert found is not None  # noqa: S101
        return found

    def sweep(self, stop: threading.Event | None = None) -> int:
        """Apply every project's retention: trash runs past their age, purge the trash
        past its period. On PostgreSQL one replica at a time (an advisory lock; another
        replica's sweep meanwhile skips). Returns the runs purged."""
        with self.engine.connect() as lock_conn:
            if lock_conn.dialect.name == "postgresql":
                got = lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                        {"k": SWEEP_LOCK}).scalar()  # fmt: skip
                lock_conn.commit()
                if not got:
                    return 0
            try:
                return self._sweep(stop)
            finally:
                if lock_conn.dialect.name == "postgresql":
                    lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK})
                    lock_conn.commit()

    def _sweep(self, stop: threading.Event | None) -> int:
        purged = 0
        with self.engine.connect() as conn:
            every = retentions.all_retention(conn)
            due_projects = set(project_bin.trashed_before(conn, self.clock()))
        for kept in every:  # a project in the trash past its period goes whole
            days = self.effective_trash_days(kept)
            if kept.project_id in due_projects and (stop is None or not stop.is_set()):
                with self.engine.connect() as conn:
                    cutoff = self.clock() - timedelta(days=days)
                    still_due = kept.project_id in project_bin.trashed_before(conn, cutoff)
                if still_due:
                    self._purge_project(kept.project_id, stop)
                    purged += 1
        for kept in every:
            if stop is not None and stop.is_set():
                break
            now = self.clock()
            if kept.max_run_age_days is not None:
                self._age_out(kept, now - timedelta(days=kept.max_run_age_days))
            days = self.effective_trash_days(kept)
            with self.engine.connect() as conn:
                due = bin_.trashed_before(conn, kept.project_id, now - timedelta(days=days),
                                          MAX_LISTED)  # fmt: skip
            for run_id in due:
                if stop is not None and stop.is_set():
                    break
                self._purge(SYSTEM_ACTOR, kept.project_id, run_id, stop)
                purged += 1
        return purged

    def _age_out(self, kept: Retention, cutoff: datetime) -> None:
        with self.engine.connect() as conn:
            old = bin_.older_than(conn, kept.project_id, cutoff, MAX_LISTED)
        if not old:
            return
        with self.tx.begin() as conn:
            for run_id in bin_.to_trash(conn, old, SYSTEM_ACTOR, self.clock()):
                audit.append(conn, action=AuditAction.RUN_DELETED, actor=SYSTEM_ACTOR,
                             target=f"run:{run_id}",
                             detail={"reason": "max_run_age_days"})  # fmt: skip
