"""HTTP for account administration: ``/api/v1/users``. Admins only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from safeboard.auth.dependencies import client_address, public_origin, requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.auth.routes import user_out
from safeboard.auth.schemas import UserOut
from safeboard.errors import Forbidden
from safeboard.provision import provided
from safeboard.users.schemas import InviteOut, SessionOut, UserCreate, UserUpdate
from safeboard.users.service import UserService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/users")


@router.get("", response_model=list[UserOut])
def list_users(
    _: Principal = requires(Permission.USERS_READ), users: UserService = provided(UserService)
) -> list[UserOut]:
    return [user_out(user) for user in users.list_all()]


@router.post("", status_code=HTTP_201_CREATED, response_model=UserOut)
def add_user(
    request: Request,
    body: UserCreate,
    principal: Principal = requires(Permission.USERS_MANAGE),
    users: UserService = provided(UserService),
) -> UserOut:
    """Add an account (no password yet: send the person an invitation)."""
    user = users.add(
        body.username,
        role=body.role,
        display_name=body.display_name,
        actor=principal.actor,
        address=client_address(request),
    )
    return user_out(user)


@router.patch("/{username}", response_model=UserOut)
def update_user(
    request: Request,
    username: str,
    body: UserUpdate,
    principal: Principal = requires(Permission.USERS_MANAGE),
    service: UserService = provided(UserService),
) -> UserOut:
    """Change role or disable/enable. The last active admin cannot be demoted or disabled."""
    where = client_address(request)
    if body.role is not None:
        service.set_role(username, body.role, actor=principal.actor, address=where)
    if body.active is not None:
        service.set_active(username, body.active, actor=principal.actor, address=where)
    return user_out(service.get(username))


@router.post("/{username}/invite", response_model=InviteOut)
def invite_user(
    request: Request,
    username: str,
    principal: Principal = requires(Permission.USERS_INVITE),
    service: UserService = provided(UserService),
) -> InviteOut:
    """A one-time link with which the user sets a password; earlier ones stop working.

    Needs a signed-in session (no API key of any scope: the link sets a password and opens
    a session, which must not outlive a leaked key). Not for yourself: change your password.
    """
    target = service.get(username)
    if target.id == principal.user_id:
        raise Forbidden("to change your own password, use /api/v1/auth/password")
    user, token = service.invite(username, actor=principal.actor, address=client_address(request))
    hours = int(service.invite_lifetime.total_seconds() // 3600)
    link = f"{public_origin(request)}/invite#token={token}"
    return InviteOut(username=user.username, link=link, expires_in_hours=hours)


@router.get("/{username}/sessions", response_model=list[SessionOut])
def user_sessions(
    username: str,
    _: Principal = requires(Permission.USERS_READ),
    users: UserService = provided(UserService),
) -> list[SessionOut]:
    return [
        SessionOut(
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            address=s.address,
            user_agent=s.user_agent,
        )
        for s in users.sessions(username)
    ]


@router.delete("/{username}/sessions", status_code=HTTP_204_NO_CONTENT)
def revoke_user_sessions(
    request: Request,
    username: str,
    principal: Principal = requires(Permission.USERS_MANAGE),
    users: UserService = provided(UserService),
) -> Response:
    """End every session of the user (their API keys are not affected)."""
    users.revoke_sessions(username, actor=principal.actor, address=client_address(request))
    return Response(status_code=HTTP_204_NO_CONTENT)
