"""Project use cases that exist before the tracking work: creating a project and changing
who holds which role in it. Every grant change is audited (S16)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from safeboard.accounts import repository as users
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.authorizer import ensure, ensure_in_project
from safeboard.auth.permissions import Permission, ProjectRole, Role
from safeboard.auth.principal import Principal
from safeboard.clock import utcnow
from safeboard.errors import Conflict, Forbidden, NotFound, SafeboardError
from safeboard.projects import lifecycle
from safeboard.projects import repository as projects
from safeboard.projects.access import may_restore, project_by_name, refuse_run_bound
from safeboard.projects.repository import NAME_TAKEN, Project
from safeboard.settings import ProjectSettings
from safeboard.storage import writer

__all__ = ["ProjectService"]


class ProjectService:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime] = utcnow,
        *,
        settings: ProjectSettings | None = None,
        activity: projects.ActivityReader,
    ) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.clock = clock
        self.settings = settings or ProjectSettings()
        self._activity = activity  # the runs domain's count (runs.repository.activity)

    def create(self, owner: Principal, name: str, description: str = "") -> Project:
        """A project, with ``owner`` as its owner (the grant is audited). A member holds
        at most ``projects.max_per_member`` (admins are exempt: they run the server). A
        taken name is refused (``_taken``)."""
        ensure(owner, Permission.PROJECTS_CREATE)
        bound = self.settings.max_per_member
        try:
            with self.tx.begin() as conn:
                # Before the name: a member at the bound learns nothing about names.
                limited = bound and owner.role is not Role.ADMIN
                if limited and projects.created_by(conn, owner.user_id) >= bound:
                    # 403, not 409: the SDK takes a 409 here for "made meanwhile".
                    raise Forbidden(
                        f"you have created {bound} projects, the most a member may "
                        "(projects.max_per_member)"
                    )
                project = projects.create(
                    conn,
                    name=name,
                    owner_id=owner.user_id,
                    now=self.clock(),
                    description=description,
                )
                audit.append(
                    conn,
                    action=AuditAction.GRANT_CHANGED,
                    actor=owner.actor,
                    target=f"project:{project.id}",
                    detail={"user": owner.username, "from": None, "to": ProjectRole.OWNER.value},
                )
        except sa.exc.IntegrityError:  # the same name created concurrently (unique index)
            raise self._taken(owner, name) from None
        except Conflict as exc:
            raise (self._taken(owner, name) if exc.message == NAME_TAKEN else exc) from None
        return project

    def _taken(self, principal: Principal, name: str) -> Conflict:
        """The answer to a taken name: "already exists" to whoever may read the project
        that holds it, since they can see it anyway; to anyone else ``NAME_TAKEN``, which
        says the name exists and nothing more (not whose it is, not that it is hidden from
        them: docs/security.md, S9). A project in the trash holds its name too: who may
        restore it (its owners, admins) hears that it is there and how to free the name."""
        with self.engine.connect() as conn:
            try:
                project_by_name(conn, principal, name, Permission.PROJECTS_READ)
            except SafeboardError:
                trashed = lifecycle.trashed_named(conn, name)
                if trashed is not None and may_restore(conn, principal, trashed.id):
                    return Conflict(
                        f"project {name!r} is in the trash: restore it (`safeboard projects "
                        f"restore {name}`), or purge it for good (`safeboard projects purge "
                        f"{name}`) to use the name again"
                    )
                return Conflict(NAME_TAKEN)
        return Conflict(f"project {name!r} already exists")

    def rename(self, principal: Principal, name: str, new_name: str) -> Project:
        """Rename a project (owners, admins): grants, keys bound to it and its runs follow
        (they hold its id); the new name must be free (``_taken`` otherwise)."""
        try:
            with self.tx.begin() as conn:
                project = project_by_name(conn, principal, name, Permission.PROJECTS_MANAGE)
                if new_name != project.name:
                    lifecycle.rename(conn, project.id, project.name, new_name, self.clock())
                    audit.append(conn, action=AuditAction.PROJECT_RENAMED,
                                 actor=principal.actor, target=f"project:{project.id}",
                                 detail={"from": project.name, "to": new_name})  # fmt: skip
                renamed = projects.get(conn, project.id)
        except Conflict as exc:
            if exc.message == NAME_TAKEN:
                raise self._taken(principal, new_name) from None
            raise
        assert renamed is not None  # noqa: S101  (renamed in this transaction)
        return renamed

    def visible(self, principal: Principal) -> list[tuple[Project, ProjectRole | None]]:
        """The projects this principal can see (a project-bound key: that one only; a
        task's token: Forbidden)."""
        refuse_run_bound(principal)
        with self.engine.connect() as conn:
            found = projects.visible(conn, principal.user_id, everyone=principal.role is Role.ADMIN)
        if principal.project_id is not None:
            found = [(p, role) for p, role in found if p.id == principal.project_id]
        return found

    def role(self, principal: Principal, project_id: int) -> ProjectRole | None:
        """The principal's role in one project it may read: what ``visible`` gives for it,
        without reading every project (an admin's list holds them all)."""
        refuse_run_bound(principal)
        with self.engine.connect() as conn:
            return projects.role_of(conn, project_id, principal.user_id)

    def activity(self, project_ids: list[int]) -> dict[int, projects.Activity]:
        """Run counts and newest run starts, by project id (absent: no runs yet)."""
        with self.engine.connect() as conn:
            return self._activity(conn, project_ids)

    def set_grant(
        self, actor: Principal, project_id: int, username: str, role: ProjectRole | None
    ) -> None:
        """Give ``username`` ``role`` in the project, or take their role away (None).

        Needs PROJECTS_MANAGE there (owners, admins). The last owner stays an owner.
        Taking away a role they do not hold is NotFound (said, not an audited no-op).
        """
        with self.tx.begin() as conn:
            ensure_in_project(
                actor,
                Permission.PROJECTS_MANAGE,
                project_id,
                projects.role_of(conn, project_id, actor.user_id),
            )
            if projects.get(conn, project_id) is None:
                raise NotFound("no such project")
            user = users.get_by_username(conn, username)
            if user is None:
                raise NotFound(f"no user {username}")
            grants = projects.grants(conn, project_id)
            before = grants.get(user.id)
            if role is None and before is None:  # truthful: nothing was taken away
                found = projects.get(conn, project_id)
                where = found.name if found is not None else "this project"
                raise NotFound(f"{user.username} had no role in {where}: nothing to revoke")
            owners = [uid for uid, held in grants.items() if held is ProjectRole.OWNER]
            if before is ProjectRole.OWNER and role is not ProjectRole.OWNER and len(owners) == 1:
                raise Conflict("this is the project's last owner: make another owner first")
            if role is None:
                projects.revoke(conn, project_id, user.id)
            else:
                projects.grant(conn, project_id, user.id, role)
            audit.append(
                conn,
                action=AuditAction.GRANT_CHANGED,
                actor=actor.actor,
                target=f"project:{project_id}",
                detail={
                    "user": user.username,
                    "from": before.value if before else None,
                    "to": role.value if role else None,
                },
            )
