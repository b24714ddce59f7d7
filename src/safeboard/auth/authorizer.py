"""One authorizer: may this principal do this? Answers from the tables in permissions.py.

``allowed`` is pure; ``ensure`` raises Forbidden, or NotFound where even the existence of
a project must not leak to someone with no grant in it.
"""

from __future__ import annotations

from safeboard.auth.permissions import (
    CREDENTIAL_PERMISSIONS,
    PROJECT_PERMISSIONS,
    PROJECT_ROLE_PERMISSIONS,
    ROLE_PERMISSIONS,
    RUN_BOUND_ROLE,
    SCOPE_OF,
    SESSION_ONLY,
    CredentialKind,
    Permission,
    ProjectRole,
    Role,
    scope_covers,
)
from safeboard.auth.permissions import PERMISSION_PHRASES as _DOING
from safeboard.auth.principal import Principal
from safeboard.errors import (
    Forbidden,
    InsufficientRole,
    InsufficientScope,
    KeyBoundToProject,
    NotFound,
)

__all__ = [
    "allowed",
    "allowed_in_project",
    "allowed_on_run",
    "could_reach",
    "credential_refusal",
    "ensure",
    "ensure_in_project",
    "ensure_on_run",
]

# What a refusal tells a task's token (S14).
_TASK_REACH = "a task's token reaches only its own run (its metrics, artifacts and status)"

# What a permission lets one do, in words: "this key may not <doing>".
# The least project role that carries each project permission, for "ask for ...".
_ROLE_FOR: dict[Permission, ProjectRole] = {
    Permission.PROJECTS_READ: ProjectRole.VIEWER,
    Permission.PROJECTS_WRITE: ProjectRole.EDITOR,
    Permission.PROJECTS_MANAGE: ProjectRole.OWNER,
}


def _credential_allows(principal: Principal, permission: Permission) -> bool:
    return permission in CREDENTIAL_PERMISSIONS[principal.credential] and scope_covers(
        principal.scope, SCOPE_OF[permission]
    )


def allowed(principal: Principal, permission: Permission) -> bool:
    """A permission that is not tied to one project (account, keys, users, audit)."""
    if permission in PROJECT_PERMISSIONS:
        raise ValueError(f"{permission} is checked per project: use allowed_in_project")
    if principal.project_id is not None and permission not in {
        Permission.ACCOUNT_READ,
    }:
        return False  # a key bound to one project reaches nothing outside it
    return permission in ROLE_PERMISSIONS[principal.role] and _credential_allows(
        principal, permission
    )


def allowed_in_project(
    principal: Principal, permission: Permission, project_id: int, grant: ProjectRole | None
) -> bool:
    """A project permission, given the principal's grant in that project (None: no grant)."""
    if permission not in PROJECT_PERMISSIONS:
        raise ValueError(f"{permission} is not a project permission: use allowed")
    if principal.project_id is not None and principal.project_id != project_id:
        return False
    if principal.run_id is not None:
        return False  # bound to one run: nothing project-wide (allowed_on_run)
    if not _credential_allows(principal, permission):
        return False
    if principal.role is Role.ADMIN:
        return True
    return grant is not None and permission in PROJECT_ROLE_PERMISSIONS[grant]


def allowed_on_run(
    principal: Principal,
    permission: Permission,
    project_id: int,
    run_id: str,
    grant: ProjectRole | None,
) -> bool:
    """A project permission on one run of ``project_id``. A principal bound to a run (a
    task's token) holds its ``RUN_BOUND_ROLE`` on that run and nothing on any other;
    anyone else, what their grant in the project gives (``allowed_in_project``)."""
    if principal.run_id is None:
        return allowed_in_project(principal, permission, project_id, grant)
    role = RUN_BOUND_ROLE.get(principal.credential)
    return (
        role is not None
        and principal.run_id == run_id
        and principal.project_id == project_id
        and _credential_allows(principal, permission)
        and permission in PROJECT_ROLE_PERMISSIONS[role]
    )


def ensure_on_run(
    principal: Principal,
    permission: Permission,
    project_id: int,
    run_id: str,
    grant: ProjectRole | None,
) -> None:
    """``allowed_on_run`` or raise: another run than a run-bound principal's own is "no
    such run" (NotFound), as is any run in a project hidden from the principal."""
    if principal.run_id is None:
        ensure_in_project(principal, permission, project_id, grant)
        return
    if principal.run_id != run_id or principal.project_id != project_id:
        raise NotFound("no such run")
    if not allowed_on_run(principal, permission, project_id, run_id, grant):
        raise credential_refusal(principal, permission)


def could_reach(principal: Principal, permission: Permission) -> bool:
    """Whether the credential can carry a project permission anywhere (type and scope)."""
    return permission in PROJECT_PERMISSIONS and _credential_allows(principal, permission)


def new_key_hint(scope: str) -> str:
    """Where a key comes from, for whoever reads a refusal: on their own machine, in the
    dashboard, or on the server's machine."""
    return (
        f"`safeboard login URL --scope {scope}` on your machine, the dashboard's account "
        f"page, or `safeboard key create --scope {scope}` on the server's machine"
    )


def credential_refusal(principal: Principal, permission: Permission) -> Forbidden:
    """Why the credential itself (its type or its scope) cannot carry ``permission``:
    ``InsufficientScope`` naming the key to create, or a plain Forbidden."""
    doing = _DOING[permission]
    if principal.credential is CredentialKind.TASK:
        return Forbidden(f"{_TASK_REACH}, so it may not {doing}")
    if principal.credential is CredentialKind.AGENT:
        return Forbidden(
            f"an agent's credential reaches only the agent API (/api/v1/agent/...), so it "
            f"may not {doing}"
        )
    if permission in SESSION_ONLY and principal.credential is not CredentialKind.SESSION:
        return Forbidden("this needs a signed-in session: API keys never set passwords")
    needed = SCOPE_OF[permission]
    in_kind = permission in CREDENTIAL_PERMISSIONS[principal.credential]
    if in_kind and not scope_covers(principal.scope, needed):
        return InsufficientScope(
            f"this API key has {principal.scope.value} scope, so it may not {doing}; use a "
            f"key with {needed.value} scope: {new_key_hint(needed.value)}"
        )
    return Forbidden(f"this credential may not {doing}")


def ensure(principal: Principal, permission: Permission) -> None:
    if allowed(principal, permission):
        return
    if _credential_allows(principal, permission) and principal.project_id is not None:
        raise KeyBoundToProject(
            f"this API key is bound to one project, so it may not {_DOING[permission]}; use "
            f"a key that is not bound to a project: {new_key_hint('write')}"
        )
    if _credential_allows(principal, permission):
        raise Forbidden(f"your account's role may not {_DOING[permission]}; ask an admin")
    raise credential_refusal(principal, permission)


def ensure_in_project(
    principal: Principal, permission: Permission, project_id: int, grant: ProjectRole | None
) -> None:
    if allowed_in_project(principal, permission, project_id, grant):
        return
    if principal.run_id is not None:  # a task's token, asked for more than its run
        if principal.project_id != project_id:
            raise NotFound("no such project")
        raise Forbidden(f"{_TASK_REACH}, not the whole project")
    visible = principal.role is Role.ADMIN or grant is not None
    if principal.project_id is not None and principal.project_id != project_id:
        visible = False
    if not visible:
        raise NotFound("no such project")
    if not _credential_allows(principal, permission):
        raise credential_refusal(principal, permission)
    wanted = _ROLE_FOR[permission].value
    raise InsufficientRole(
        f"your role in this project ({grant.value if grant else 'none'}) may not "
        f"{_DOING[permission].replace('this project', 'it')}; ask a project owner to grant "
        f"you the {wanted} role"
    )
