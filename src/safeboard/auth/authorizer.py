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
    "could_reach",
    "credential_refusal",
    "ensure",
    "ensure_in_project",
]

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
    if not _credential_allows(principal, permission):
        return False
    if principal.role is Role.ADMIN:
        return True
    return grant is not None and permission in PROJECT_ROLE_PERMISSIONS[grant]


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
