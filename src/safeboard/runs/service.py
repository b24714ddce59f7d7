"""Run use cases: create (idempotent by id), read, update status/tags/params/notes, and
the one list of a project's runs (``table``: filter, any sort, keyset pages, columns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine

from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.documents import document_problem, tags_problem
from safeboard.errors import Conflict, InvalidRequest
from safeboard.events import Event, EventBus
from safeboard.ids import new_id
from safeboard.metrics import queries as metric_queries
from safeboard.metrics.queries import Summary
from safeboard.projects.access import project_by_name, visible_project_ids
from safeboard.projects.repository import Project
from safeboard.runs import repository as runs
from safeboard.runs.access import run_for
from safeboard.runs.projection import param_path
from safeboard.runs.repository import Run
from safeboard.runs.table import ColumnKeys, RunQuery, RunTable, column_keys, table_page
from safeboard.storage import writer
from safeboard.vocabulary import FINAL_STATUSES, RunStatus, is_id_prefix

__all__ = ["RunService"]


def _check(problem: str | None) -> None:
    """Refuse what is beyond the bounds of safeboard.documents before storing anything."""
    if problem is not None:
        raise InvalidRequest(problem)


class RunService:
    def __init__(
        self, engine: Engine, events: EventBus | None = None, clock: Clock = utcnow
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.events = events
        self.clock = clock

    def _record(self, conn: Connection, run: Run) -> Event | None:
        """The run's live update, written in ``conn``'s transaction (the run's change): it
        exists exactly when the change does. Returns it when it is yet to be handed to this
        process's streams after the commit (``_announce``: SQLite)."""
        if self.events is None:
            return None
        event = Event("run", run.project_id, run.id, {"status": run.status})
        return None if self.events.publish_at_commit(conn, event) else event

    def _announce(self, event: Event | None) -> None:
        if self.events is not None and event is not None:
            self.events.publish(event)

    def create(
        self,
        principal: Principal,
        project_name: str,
        *,
        run_id: str | None = None,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        system: Mapping[str, Any] | None = None,
        notes: str = "",
    ) -> Run:
        """A new run. Creating the same id again in the same project returns the existing
        run (an SDK retrying, or syncing an offline run)."""
        run_id = run_id or new_id()
        _check(document_problem(dict(params or {}), "config"))
        _check(document_problem(dict(system or {}), "system"))
        _check(tags_problem(dict(tags or {})))
        with self.tx.begin() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_WRITE)
            existing = runs.get(conn, run_id)
            if existing is not None:
                if existing.project_id != project.id:
                    raise Conflict("a run with this id exists in another project")
                return existing
            run = Run(
                id=run_id,
                project_id=project.id,
                name=name or f"run-{run_id[:8]}",
                status=RunStatus.RUNNING.value,
                created_at=self.clock(),
                ended_at=None,
                params=dict(params or {}),
                system=dict(system or {}),
                notes=notes,
                created_by=principal.user_id,
                tags=dict(tags or {}),
            )
            runs.create(conn, run)
            event = self._record(conn, run)
        self._announce(event)
        return run

    def get(self, principal: Principal, run_id: str, permission: Permission) -> tuple[Run, Project]:
        """The run with its config and system information (see Run.withheld)."""
        with self.engine.connect() as conn:
            return run_for(conn, principal, run_id, permission, documents=True)

    def detail(self, principal: Principal, run_id: str) -> tuple[Run, Project, list[Summary]]:
        """The run whole with its metrics' summaries: one access walk on one connection."""
        with self.engine.connect() as conn:
            run, project = run_for(
                conn, principal, run_id, Permission.PROJECTS_READ, documents=True
            )
            return run, project, metric_queries.summaries(conn, run_id)

    def update(
        self,
        principal: Principal,
        run_id: str,
        *,
        status: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str | None] | None = None,
        notes: str | None = None,
    ) -> Run:
        """Merge params (top-level keys), set or remove tags, set notes or a final status.
        The run after the change must be within the bounds (safeboard.documents)."""
        with self.engine.connect() as conn:
            run_for(conn, principal, run_id, Permission.PROJECTS_WRITE)
        with self.tx.begin() as conn:
            run = runs.get(conn, run_id, documents=bool(params))
            assert run is not None  # noqa: S101  (checked above; runs are not deleted here)
            values: dict[str, Any] = {}
            if status is not None and status != run.status:
                if run.status in FINAL_STATUSES:
                    raise Conflict(f"the run is already {run.status}")
                if status not in FINAL_STATUSES:
                    raise InvalidRequest("status: finished, failed or killed")
                values.update(status=status, ended_at=self.clock())
            if params:
                if "config" in run.withheld:
                    raise InvalidRequest("config: the stored config is beyond the bounds")
                values["params"] = {**run.params, **params}
                _check(document_problem(values["params"], "config"))
            if tags:
                _check(tags_problem({**run.tags, **tags}))
            if notes is not None:
                values["notes"] = notes
            runs.update(conn, run_id, **values)
            if tags:
                runs.set_tags(conn, run_id, tags)
            updated = runs.get(conn, run_id)
            assert updated is not None  # noqa: S101
            event = self._record(conn, updated)
        self._announce(event)
        return updated

    def table(self, principal: Principal, project_name: str, query: RunQuery) -> RunTable:
        """A page of the project's runs as ``query`` asks (runs/table.py): the one read path
        behind the dashboard's runs table, the API's list and ``safeboard runs list``.
        BadRequest names the problem: an unknown sort key (and the valid ones), a config
        path that is not one, a filter or a cursor that cannot be read."""
        for path in query.config:
            param_path(path, "config_key")
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_READ)
            return table_page(conn, project.id, query)

    def columns(self, principal: Principal, project_name: str) -> tuple[Project, ColumnKeys]:
        """The project, and the param paths, tag keys and metric keys its recent runs
        have: what a column picker offers."""
        with self.engine.connect() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_READ)
            return project, column_keys(conn, project.id)

    def ids_starting(self, principal: Principal, prefix: str, limit: int) -> list[str]:
        """Ids of the runs this principal can see that start with ``prefix`` (an id as
        printed, shortened), at most ``limit``: how clients resolve a short id."""
        if not is_id_prefix(prefix):
            raise InvalidRequest("prefix: 1 to 32 lowercase hex digits (a run id as printed)")
        with self.engine.connect() as conn:
            return runs.ids_with_prefix(conn, prefix, visible_project_ids(conn, principal), limit)
