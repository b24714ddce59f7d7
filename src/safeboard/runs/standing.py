"""Whether an open event stream may go on: the checks an ordinary request passes once,
asked in bulk for requests that last (runs/streams.py; S8, S9).

A stream lasts for hours, so each replica re-asks the database about all its open streams
together: the accounts domain says which credentials still stand and with what role
(``accounts.standing``), the projects domain which grants still hold
(``projects.repository.grants_among``), and :func:`refusal` applies the authorizer to the
answer. At most four small indexed queries (keys, sessions, accounts, grants) however
many streams are open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from safeboard.accounts.standing import CredentialStanding, chunks, read_credentials, standing_role
from safeboard.auth.authorizer import allowed_in_project
from safeboard.auth.permissions import Permission, ProjectRole
from safeboard.auth.principal import Principal
from safeboard.projects import repository as projects

__all__ = ["ACCESS_ENDED", "CREDENTIAL_ENDED", "Refusal", "Standing", "read_standing", "refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a lasting request must end, in the API's error terms (code, message)."""

    code: str
    message: str


CREDENTIAL_ENDED = Refusal(
    "unauthenticated", "this stream's credential was revoked or has expired: sign in again"
)
ACCESS_ENDED = Refusal("not_found", "this stream's project is no longer yours to read")


@dataclass(frozen=True)
class Standing:
    """What the database says now about some principals; absent means gone."""

    credentials: CredentialStanding = field(default_factory=CredentialStanding)
    grants: dict[tuple[int, int], ProjectRole] = field(default_factory=dict)
    queries: int = 0  # how many statements it took (reported by the stream guard)


def read_standing(conn: Connection, watched: Sequence[tuple[Principal, int]]) -> Standing:
    """The state of every (principal, project id) pair's credential, account and grant."""
    credentials = read_credentials(conn, [p for p, _ in watched])
    project_ids = {project_id for _, project_id in watched}
    grants: dict[tuple[int, int], ProjectRole] = {}
    queries = credentials.queries
    for user_chunk in chunks({p.user_id for p, _ in watched}):
        queries += 1
        grants.update(projects.grants_among(conn, user_chunk, project_ids))
    return Standing(credentials, grants, queries)


def refusal(
    standing: Standing, principal: Principal, project_id: int, now: datetime, idle: timedelta
) -> Refusal | None:
    """None while ``principal`` may still read ``project_id``; else why not. The rules of
    ``ApiKeyService.principal``, ``AuthService.session_principal`` and the authorizer."""
    role = standing_role(standing.credentials, principal, now, idle)
    if role is None:
        return CREDENTIAL_ENDED
    current = replace(principal, role=role)  # a demoted admin loses what the role gave
    grant = standing.grants.get((project_id, principal.user_id))
    if not allowed_in_project(current, Permission.PROJECTS_READ, project_id, grant):
        return ACCESS_ENDED
    return None
