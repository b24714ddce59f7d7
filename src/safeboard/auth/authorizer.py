"""One authorizer: may this principal do this? Answers from the tables in permissions.py.

``allowed`` is pure; ``ensure`` raises Forbidden, or NotFound where even the existence of
a project must not leak to someone with no grant in it.
"""

from __future__ import annotations

from safeboard.auth.permissions import (
    CREDENTIAL_PERMISSIONS,
    PERMISSION_PHRASES,
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
from safeboard.auth.principal import Principal
from safeboard.errors import Forbidden, NotFound

__all__ = ["allowed", "allowed_in_project", "could_reach", "ensure", "ensure_in_project"]


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


def ensure(principal: Principal, permission: Permission) -> None:
    if allowed(principal, permission):
        return
    if permission in SESSION_ONLY and principal.credential is not CredentialKind.SESSION:
        raise Forbidden("this needs a signed-in session: API keys never set passwords")
    raise Forbidden(f"this credential may not {PERMISSION_PHRASES[permission]}")


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
    raise Forbidden(
        f"your role here ({grant.value if grant else 'none'}) may not "
        f"{PERMISSION_PHRASES[permission]}"
    )
