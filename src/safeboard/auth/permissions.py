"""Permissions as data: what each role, project role, key scope and credential type may do.

A route declares one ``Permission``; the authorizer answers from these tables only.
"""

from __future__ import annotations

from enum import StrEnum

from safeboard import vocabulary

__all__ = [
    "CREDENTIAL_PERMISSIONS",
    "PERMISSION_PHRASES",
    "PROJECT_PERMISSIONS",
    "PROJECT_ROLE_PERMISSIONS",
    "ROLE_PERMISSIONS",
    "RUN_BOUND_ROLE",
    "SCOPE_OF",
    "SCOPE_ORDER",
    "SESSION_ONLY",
    "CredentialKind",
    "Permission",
    "ProjectRole",
    "Role",
    "Scope",
    "scope_covers",
]


class Permission(StrEnum):
    # Your own account.
    ACCOUNT_READ = "account:read"
    ACCOUNT_UPDATE = "account:update"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    # Administration.
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    # Mint a link that sets someone's password and signs them in (an invitation).
    USERS_INVITE = "users:invite"
    AUDIT_READ = "audit:read"
    # Projects. Those below PROJECTS_CREATE are checked against a project's grants.
    PROJECTS_CREATE = "projects:create"
    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    PROJECTS_MANAGE = "projects:manage"
    # Agents. AGENTS_MANAGE: an admin's (join tokens, the list, revocation). AGENT_CALL:
    # what an enrolled agent calls (``/api/v1/agent/...``); only an agent's credential
    # carries it, and an agent's credential carries nothing else (CREDENTIAL_PERMISSIONS).
    AGENTS_MANAGE = "agents:manage"
    AGENT_CALL = "agent:call"
    # TensorBoard over a directory of the server's machine (docs/tensorboard.md): admins'.
    TENSORBOARD_LOGDIR = "tensorboard:logdir"
    # The server's Prometheus metrics (``GET /metrics``): admins', through a key of the
    # dedicated metrics scope only (a scrape key can do nothing else).
    METRICS_READ = "metrics:read"


# What each permission lets one do, for messages: "this credential may not <phrase>".
PERMISSION_PHRASES: dict[Permission, str] = {
    Permission.ACCOUNT_READ: "read this account",
    Permission.ACCOUNT_UPDATE: "change this account",
    Permission.KEYS_READ: "list API keys",
    Permission.KEYS_WRITE: "create or revoke API keys",
    Permission.USERS_READ: "list accounts",
    Permission.USERS_MANAGE: "manage accounts",
    Permission.USERS_INVITE: "invite people",
    Permission.AUDIT_READ: "read the audit log",
    Permission.PROJECTS_CREATE: "create projects",
    Permission.PROJECTS_READ: "read this project",
    Permission.PROJECTS_WRITE: "write to this project",
    Permission.PROJECTS_MANAGE: "manage who has access to this project",
    Permission.AGENTS_MANAGE: "manage agents",
    Permission.AGENT_CALL: "call the agent API (only an enrolled agent's credential can)",
    Permission.TENSORBOARD_LOGDIR: "open TensorBoard on a directory of the server",
    Permission.METRICS_READ: "read the server's metrics (a key of metrics scope can)",
}


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


ProjectRole = vocabulary.ProjectRole  # shared with clients: safeboard.vocabulary
Scope = vocabulary.KeyScope


class CredentialKind(StrEnum):
    SESSION = "session"
    API_KEY = "api_key"
    AGENT = "agent"  # an enrolled agent's credential, sb_agent_<id>_<secret>
    TASK = "task"  # a task's token, sb_task_<id>_<secret>: one attempt's own run only


PROJECT_PERMISSIONS = frozenset(
    {Permission.PROJECTS_READ, Permission.PROJECTS_WRITE, Permission.PROJECTS_MANAGE}
)

_OWN = frozenset(
    {
        Permission.ACCOUNT_READ,
        Permission.ACCOUNT_UPDATE,
        Permission.KEYS_READ,
        Permission.KEYS_WRITE,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    # Members reach projects only through grants (checked separately). AGENT_CALL is no
    # person's: the credential type decides it (an agent's principal is a member).
    Role.MEMBER: _OWN | {Permission.PROJECTS_CREATE, Permission.AGENT_CALL} | PROJECT_PERMISSIONS,
}

PROJECT_ROLE_PERMISSIONS: dict[ProjectRole, frozenset[Permission]] = {
    ProjectRole.VIEWER: frozenset({Permission.PROJECTS_READ}),
    ProjectRole.EDITOR: frozenset({Permission.PROJECTS_READ, Permission.PROJECTS_WRITE}),
    ProjectRole.OWNER: PROJECT_PERMISSIONS,
}

# The key scope each permission needs.
SCOPE_OF: dict[Permission, Scope] = {
    Permission.ACCOUNT_READ: Scope.READ,
    Permission.ACCOUNT_UPDATE: Scope.ADMIN,
    Permission.KEYS_READ: Scope.READ,
    Permission.KEYS_WRITE: Scope.ADMIN,
    Permission.USERS_READ: Scope.ADMIN,
    Permission.USERS_MANAGE: Scope.ADMIN,
    Permission.USERS_INVITE: Scope.ADMIN,
    Permission.AUDIT_READ: Scope.ADMIN,
    Permission.PROJECTS_CREATE: Scope.WRITE,
    Permission.PROJECTS_READ: Scope.READ,
    Permission.PROJECTS_WRITE: Scope.WRITE,
    Permission.PROJECTS_MANAGE: Scope.ADMIN,
    Permission.AGENTS_MANAGE: Scope.ADMIN,
    Permission.AGENT_CALL: Scope.WRITE,
    Permission.TENSORBOARD_LOGDIR: Scope.ADMIN,
    Permission.METRICS_READ: Scope.METRICS,
}

# Only a signed-in session carries these, never an API key of any scope: changing your
# password (and ending your own sessions, the same permission) and inviting someone (the
# link sets their password and signs them in). So a leaked key cannot become a password,
# or a session that outlives the key's revocation. At the machine the server's owner does
# the same with ``safeboard user ...``, which opens the database and needs no key.
SESSION_ONLY = frozenset({Permission.ACCOUNT_UPDATE, Permission.USERS_INVITE})

# What each type of credential can ever grant, whatever its owner may do.
# An agent's credential reaches the agent routes only, and nothing else reaches them (S9).
_AGENT_ONLY = frozenset({Permission.AGENT_CALL})
CREDENTIAL_PERMISSIONS: dict[CredentialKind, frozenset[Permission]] = {
    CredentialKind.SESSION: frozenset(Permission) - _AGENT_ONLY,
    CredentialKind.API_KEY: frozenset(Permission) - SESSION_ONLY - _AGENT_ONLY,
    CredentialKind.AGENT: _AGENT_ONLY,
    # A task's token: its own run alone (RUN_BOUND_ROLE), never project-wide.
    CredentialKind.TASK: frozenset({Permission.PROJECTS_READ, Permission.PROJECTS_WRITE}),
}

# Credentials bound to one run (S14: a task's token). Such a principal (``run_id`` set)
# holds this project role on its own run and nothing anywhere else: no project-wide use
# (listing or creating runs, the project itself, tasks but its own), no other run, no
# other project. ``authorizer.allowed_on_run`` applies it; ``allowed_in_project``, the
# project-wide check, refuses such a principal.
RUN_BOUND_ROLE: dict[CredentialKind, ProjectRole] = {CredentialKind.TASK: ProjectRole.EDITOR}

SCOPE_ORDER = (Scope.READ, Scope.WRITE, Scope.ADMIN)


def scope_covers(granted: Scope, needed: Scope) -> bool:
    if Scope.METRICS in (granted, needed):  # a scrape key's scope stands apart
        return granted is needed
    return SCOPE_ORDER.index(granted) >= SCOPE_ORDER.index(needed)
