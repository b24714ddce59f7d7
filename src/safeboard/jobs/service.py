"""Task use cases for users: submit (with the task's run), list, show, cancel, retry.
Tasks belong to a project: who may write to it submits, cancels and retries its tasks;
who may read it lists and shows them (no grant: 404, as for runs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.authorizer import allowed_in_project, credential_refusal
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.clock import Clock, utcnow
from safeboard.errors import Conflict, Forbidden, InvalidRequest, NotFound
from safeboard.events import Event
from safeboard.ids import new_id
from safeboard.jobs import repository as tasks
from safeboard.jobs.code import missing_code
from safeboard.jobs.lifecycle import RunChange, RunNotices, set_run_status
from safeboard.jobs.repository import Attempt, Task
from safeboard.jobs.spec import TaskSpec, params_problem, params_type_problem, spec_problem
from safeboard.jobs.task_secrets import SecretsUnreadable, TaskSecrets
from safeboard.jobs.waiting import waiting_reason
from safeboard.jobs.wakeup import Wakeup
from safeboard.projects import repository as projects
from safeboard.projects.access import (
    project_and_grant,
    project_by_id,
    project_by_name,
    visible_project_ids,
)
from safeboard.runs import repository as runs
from safeboard.runs.repository import Run
from safeboard.storage import writer
from safeboard.vocabulary import FINAL_TASK_STATES, RunStatus, TaskState

__all__ = ["Rerun", "TaskDetail", "TaskService"]

_FINAL = {state.value for state in FINAL_TASK_STATES}
MAX_LISTED = 500


@dataclass(frozen=True)
class TaskDetail:
    task: Task
    project: str
    attempts: list[Attempt]
    secret_names: list[str] = field(default_factory=list)  # never the values
    waiting_reason: str | None = None  # queued, and no enrolled agent could take it (waiting.py)


@dataclass(frozen=True)
class Rerun:
    """What "Run again" may change: the command, the parameters and the resources."""

    command: list[str]
    params: dict[str, Any]
    gpus: int = 0
    labels: list[str] = field(default_factory=list)
    priority: int = 0
    max_seconds: int | None = None
    name: str | None = None


class TaskService:
    def __init__(
        self,
        engine: Engine,
        wakeup: Wakeup,
        *,
        clock: Clock = utcnow,
        notices: RunNotices | None = None,
        secrets: TaskSecrets | None = None,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.wakeup = wakeup
        self.clock = clock
        self.notices = notices or RunNotices()
        self.secrets = secrets or TaskSecrets(engine, None)  # sealed at rest

    def submit(self, principal: Principal, project_name: str, spec: TaskSpec) -> TaskDetail:
        """Queue a task, with its run (status ``queued``) so the user can follow it."""
        problem = spec_problem(spec)
        if problem is not None:
            raise InvalidRequest(problem)
        with self.tx.begin() as conn:
            project = project_by_name(conn, principal, project_name, Permission.PROJECTS_WRITE)
            if spec.code_sha256 is not None:  # an archive this project holds
                missing = missing_code(conn, project.id, project.name, spec.code_sha256)
                if missing is not None:
                    raise InvalidRequest(missing)
            task, recorded = self._queue(conn, principal, project.id, spec, retry_of=None)
            why = _waiting(conn, task)
        self._queued(recorded)
        return TaskDetail(task, project.name, [], sorted(spec.secrets), why)

    def _queue(
        self,
        conn: Connection,
        principal: Principal,
        project_id: int,
        spec: TaskSpec,
        retry_of: int | None,
    ) -> tuple[Task, list[Event]]:
        now = self.clock()
        run_id = new_id()
        runs.create(conn, Run(id=run_id, project_id=project_id, name=spec.name or "task",
                              status=RunStatus.QUEUED.value, created_at=now, ended_at=None,
                              params={}, system={}, notes="",
                              created_by=principal.user_id or None))  # fmt: skip
        task_id = tasks.insert_task(
            conn,
            project_id=project_id,
            run_id=run_id,
            submitted_by=principal.user_id or None,
            command=list(spec.command),
            env=dict(spec.env),
            gpus=spec.gpus,
            labels=sorted(set(spec.labels)),
            priority=spec.priority,
            max_seconds=spec.max_seconds,
            max_lost_retries=spec.max_lost_retries,
            retry_on_failure=spec.retry_on_failure,
            state=TaskState.QUEUED.value,
            attempt=0,
            retry_of=retry_of,
            reason="",
            created_at=now,
            code_sha256=spec.code_sha256,
            params=dict(spec.params),
        )
        if spec.name is None:
            runs.update(conn, run_id, name=f"task-{task_id}")
        try:
            self.secrets.store(conn, task_id, spec.secrets)  # sealed under this task's id
        except SecretsUnreadable as exc:
            raise InvalidRequest(f"secrets cannot be stored: {exc.message}") from None
        # The audit detail names the secrets ("sealed_variables"), never their values.
        audit.append(conn, action=AuditAction.TASK_SUBMITTED, actor=principal.actor,
                     target=f"task:{task_id}",
                     detail={"project_id": project_id, "run": run_id, "gpus": spec.gpus,
                             "retry_of": retry_of,
                             "sealed_variables": sorted(spec.secrets)})  # fmt: skip
        self.wakeup.notify_at_commit(conn)
        recorded: list[Event] = []
        change = RunChange(project_id, run_id, RunStatus.QUEUED.value)
        self.notices.record(conn, change, recorded)
        task = tasks.get_task(conn, task_id)
        assert task is not None  # noqa: S101  (inserted just above)
        return task, recorded

    def _queued(self, recorded: list[Event]) -> None:
        """After the commit: wake this process's waiting agents, tell live views."""
        self.wakeup.notify()
        self.notices.deliver(recorded)

    def listed(
        self,
        principal: Principal,
        *,
        project: str | None = None,
        states: Sequence[str] = (),
        before: int | None = None,
        limit: int = 100,
    ) -> list[TaskDetail]:
        """Tasks newest first (ids below ``before``), of one project or of every project
        this principal can read, in the given states."""
        unknown = set(states) - {s.value for s in TaskState}
        if unknown:
            raise InvalidRequest(f"state: one of {', '.join(s.value for s in TaskState)}")
        with self.engine.connect() as conn:
            if project is not None:
                found = project_by_name(conn, principal, project, Permission.PROJECTS_READ)
                ids: list[int] | None = [found.id]
            else:
                ids = visible_project_ids(conn, principal)
            listed = tasks.list_tasks(conn, ids, states=states, before=before,
                                      limit=min(max(limit, 1), MAX_LISTED))  # fmt: skip
            names = {}
            for project_id in {t.project_id for t in listed}:
                found_project = projects.get(conn, project_id)
                names[project_id] = found_project.name if found_project else ""
            secret_names = self.secrets.names(conn, (t.id for t in listed))
        return [TaskDetail(t, names[t.project_id], [], secret_names[t.id]) for t in listed]

    def get(self, principal: Principal, task_id: int) -> TaskDetail:
        """The task with its attempts."""
        with self.engine.connect() as conn:
            task = self._task(conn, principal, task_id, Permission.PROJECTS_READ)
            project = projects.get(conn, task.project_id)  # read access: checked by _task
            name = project.name if project is not None else ""
            return TaskDetail(task, name, tasks.attempts_of(conn, task_id),
                              self.secrets.names(conn, [task_id])[task_id],
                              _waiting(conn, task))  # fmt: skip

    def cancel(self, principal: Principal, task_id: int) -> TaskDetail:
        """A queued task is cancelled at once; a leased or running one becomes
        ``cancelling`` (its agent hears it at the next heartbeat and stops the process)
        and ``cancelled`` when the agent reports the exit. Cancelling again changes
        nothing (a cancelled task stays so); a task finished otherwise: Conflict."""
        recorded: list[Event] = []
        with self.tx.begin() as conn:
            task = self._task(conn, principal, task_id, Permission.PROJECTS_WRITE, lock=True)
            if task.state in _FINAL and task.state != TaskState.CANCELLED.value:
                raise Conflict(f"task {task_id} is already {task.state}")
            if task.cancel_requested_at is None and task.state not in _FINAL:
                now = self.clock()
                values: dict[str, object] = {"cancel_requested_by": principal.username[:200],
                                             "cancel_requested_at": now}  # fmt: skip
                if task.state == TaskState.QUEUED.value:
                    values.update(state=TaskState.CANCELLED.value, finished_at=now,
                                  reason=f"cancelled by {principal.username}"[:200])  # fmt: skip
                    killed = set_run_status(conn, task, RunStatus.KILLED, now)
                    self.notices.record(conn, killed, recorded)
                else:
                    values["state"] = TaskState.CANCELLING.value
                tasks.update_task(conn, task_id, **values)
                # The task's process loses its token now (S14: it dies with the task).
                tasks.revoke_tokens(conn, task_id, now)
                audit.append(conn, action=AuditAction.TASK_CANCELLED, actor=principal.actor,
                             target=f"task:{task_id}", detail={"state": task.state})  # fmt: skip
        self.notices.deliver(recorded)
        return self.get(principal, task_id)

    def retry(self, principal: Principal, task_id: int) -> TaskDetail:
        """A finished task again, as a new task with a new run (the old run keeps its
        history and final status); the new task names the old one (``retry_of``)."""
        with self.tx.begin() as conn:
            old = self._task(conn, principal, task_id, Permission.PROJECTS_WRITE)
            if old.state not in _FINAL:
                raise Conflict(f"task {task_id} is {old.state}: retry a finished task")
            project = project_by_id(conn, principal, old.project_id, Permission.PROJECTS_WRITE)
            try:  # the new task carries them over, sealed anew under its own id
                carried = self.secrets.reveal(conn, old.id)
            except SecretsUnreadable as exc:
                raise Conflict(f"task {task_id}'s secrets cannot be decrypted: {exc.message}; "
                               "submit it again with its secrets") from None  # fmt: skip
            spec = TaskSpec(command=old.command, env=old.env, gpus=old.gpus, labels=old.labels,
                            priority=old.priority, max_seconds=old.max_seconds,
                            max_lost_retries=old.max_lost_retries,
                            retry_on_failure=old.retry_on_failure,
                            code_sha256=old.code_sha256, secrets=carried,
                            params=old.params)  # fmt: skip
            task, recorded = self._queue(conn, principal, project.id, spec, retry_of=old.id)
            why = _waiting(conn, task)
        self._queued(recorded)
        return TaskDetail(task, project.name, [], sorted(carried), why)

    def run_again(self, principal: Principal, task_id: int, edits: Rerun) -> TaskDetail:
        """Run again: a new task with the old one's code, environment and secrets (sealed
        anew) and the edited command, parameters and resources, with a new run. The
        parameters are checked against the old run's config: a number stays a number."""
        problem = params_problem(edits.params)
        if problem is not None:
            raise InvalidRequest(problem)
        with self.tx.begin() as conn:
            old = self._task(conn, principal, task_id, Permission.PROJECTS_WRITE)
            project = project_by_id(conn, principal, old.project_id, Permission.PROJECTS_WRITE)
            run = runs.get(conn, old.run_id)
            problem = params_type_problem(edits.params, dict(run.params) if run else {})
            if problem is not None:
                raise InvalidRequest(problem)
            try:
                carried = self.secrets.reveal(conn, old.id)
            except SecretsUnreadable as exc:
                raise Conflict(f"task {task_id}'s secrets cannot be decrypted: {exc.message}; "
                               "submit it again with its secrets") from None  # fmt: skip
            spec = TaskSpec(command=edits.command, env=old.env, gpus=edits.gpus,
                            labels=edits.labels, priority=edits.priority,
                            max_seconds=edits.max_seconds,
                            max_lost_retries=old.max_lost_retries,
                            retry_on_failure=old.retry_on_failure, name=edits.name,
                            code_sha256=old.code_sha256, secrets=carried,
                            params=edits.params)  # fmt: skip
            problem = spec_problem(spec)
            if problem is not None:
                raise InvalidRequest(problem)
            task, recorded = self._queue(conn, principal, project.id, spec, retry_of=None)
            why = _waiting(conn, task)
        self._queued(recorded)
        return TaskDetail(task, project.name, [], sorted(carried), why)

    def of_run(self, principal: Principal, run_id: str) -> Task | None:
        """The task that made ``run_id``, if one did and this principal may submit to
        its project (what "Run again" needs), else None."""
        with self.engine.connect() as conn:
            task = tasks.task_of_run(conn, run_id)
            if task is None:
                return None
            try:
                project_by_id(conn, principal, task.project_id, Permission.PROJECTS_WRITE)
            except (NotFound, Forbidden):
                return None
            return task

    def may_change(self, principal: Principal, task: Task) -> bool:
        """Whether ``principal`` may cancel and retry ``task`` (what those check): its
        page shows the buttons to them only."""
        if principal.task_id is not None:
            return False
        with self.engine.connect() as conn:
            _, grant = project_and_grant(conn, principal, task.project_id,
                                         Permission.PROJECTS_READ)  # fmt: skip
        return allowed_in_project(principal, Permission.PROJECTS_WRITE, task.project_id, grant)

    @staticmethod
    def _task(
        conn: Connection,
        principal: Principal,
        task_id: int,
        permission: Permission,
        *,
        lock: bool = False,
    ) -> Task:
        if principal.task_id is not None and principal.task_id != task_id:
            raise NotFound(f"no task {task_id}")  # a task's token: its own task only
        task = tasks.get_task(conn, task_id, lock=lock)
        if task is None:
            raise NotFound(f"no task {task_id}")
        if principal.task_id is not None:  # its own task: read, never change
            if permission is not Permission.PROJECTS_READ:
                raise credential_refusal(principal, permission)
            return task
        try:
            project_by_id(conn, principal, task.project_id, permission)
        except NotFound:
            raise NotFound(f"no task {task_id}") from None
        return task


def _waiting(conn: Connection, task: Task) -> str | None:
    """Why a queued task cannot be leased by any enrolled agent (None: one could)."""
    if task.state != TaskState.QUEUED.value:
        return None
    return waiting_reason(conn, task.gpus, task.labels)
