"""HTTP for sign-in, sessions and API keys (``/api/v1/auth/*``, ``/api/v1/keys``:
``router``) and for account administration (``/api/v1/users``, admins only:
``users_router``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from safeboard.accounts.context import AuthContext, sign_in_context
from safeboard.accounts.repository import KeyInfo, User
from safeboard.accounts.schemas import (
    InviteAccept,
    Invitee,
    InviteOut,
    InviteToken,
    KeyCreate,
    KeyCreated,
    KeyOut,
    LoginRequest,
    OwnSessionOut,
    PasswordChange,
    SessionOut,
    SignedIn,
    TokenRequest,
    UserCreate,
    UserOut,
    UserSessionOut,
    UserUpdate,
)
from safeboard.accounts.sessions import NewSession, SignInContext, session_ref
from safeboard.accounts.users import UserService
from safeboard.auth.csrf import safe_next
from safeboard.auth.dependencies import (
    client_address,
    public_origin,
    requires,
    session_cookie,
    sign_in_guard,
)
from safeboard.auth.permissions import CredentialKind, Permission
from safeboard.auth.principal import Principal
from safeboard.errors import BadRequest, Forbidden
from safeboard.provision import provided

__all__ = ["router", "user_out", "users_router"]


router = APIRouter(prefix="/api/v1")
_SIGN_IN = [Depends(sign_in_guard)]


def user_out(user: User) -> UserOut:
    return UserOut(
        username=user.username,
        display_name=user.display_name,
        role=user.role.value,
        is_active=user.is_active,
        has_password=user.has_password,
        created_at=user.created_at,
    )


def _signed_in(
    request: Request,
    response: Response,
    context: AuthContext,
    session: NewSession,
    next_path: str | None,
) -> SignedIn:
    """Set the session cookie (a new id at every sign-in: no fixation) and describe it,
    with the binding secret that must come with the cookie (only here, never again)."""
    policy = context.cookie
    response.set_cookie(
        policy.name(request),
        session.session_id,
        max_age=policy.max_age,
        path="/",
        secure=policy.secure,
        httponly=True,
        samesite="lax",
    )
    return SignedIn(
        user=user_out(session.user),
        credential=CredentialKind.SESSION.value,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
        redirect=safe_next(next_path),
        binding=session.binding,
    )


@router.post("/auth/login", dependencies=_SIGN_IN, response_model=SignedIn)
def login(
    request: Request,
    body: LoginRequest,
    response: Response,
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> SignedIn:
    """Sign in with a user name and password; sets the session cookie."""
    session = context.auth.login_password(body.username, body.password, where)
    return _signed_in(request, response, context, session, body.next)


@router.post("/auth/startup", dependencies=_SIGN_IN, response_model=SignedIn)
def startup_link(
    request: Request,
    body: TokenRequest,
    response: Response,
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> SignedIn:
    """Sign in with the token of the link printed at server start (single use)."""
    session = context.auth.login_startup(body.token, where)
    return _signed_in(request, response, context, session, body.next)


@router.post("/auth/invite/lookup", dependencies=_SIGN_IN, response_model=Invitee)
def look_up_invite(body: InviteToken, context: AuthContext = provided(AuthContext)) -> Invitee:
    """Whom a valid invitation is for; the invitation stays unused. A POST, so that the
    token never appears in a URL or an access log; any other token gets 401."""
    user = context.auth.invited_user(body.token)
    return Invitee(username=user.username, display_name=user.display_name)


@router.post("/auth/invite", dependencies=_SIGN_IN, response_model=SignedIn)
def accept_invite(
    request: Request,
    body: InviteAccept,
    response: Response,
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> SignedIn:
    """Set your password with an invitation's token, and sign in."""
    session = context.auth.accept_invite(body.token, body.password, where)
    return _signed_in(request, response, context, session, None)


@router.post("/auth/logout", status_code=HTTP_204_NO_CONTENT)
def logout(
    request: Request,
    response: Response,
    principal: Principal = requires(Permission.ACCOUNT_READ),
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> Response:
    """End this session (its row is deleted) and clear the cookie."""
    if principal.credential is not CredentialKind.SESSION:
        raise BadRequest("sign-out ends a browser session; to stop an API key, revoke it")
    context.auth.logout(principal, where)
    response.status_code = HTTP_204_NO_CONTENT
    response.delete_cookie(
        context.cookie.name(request),
        path="/",
        secure=context.cookie.secure,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/auth/session", response_model=SessionOut)
def whoami(
    request: Request,
    principal: Principal = requires(Permission.ACCOUNT_READ),
    context: AuthContext = provided(AuthContext),
    users: UserService = provided(UserService),
) -> SessionOut:
    """Who you are, and the CSRF token that goes with your session."""
    csrf = None
    if principal.credential is CredentialKind.SESSION:
        csrf = context.auth.csrf_token(session_cookie(request) or "")
    return SessionOut(
        user=user_out(users.get(principal.username)),
        credential=principal.credential.value,
        csrf_token=csrf,
    )


@router.post("/auth/password", status_code=HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChange,
    principal: Principal = requires(Permission.ACCOUNT_UPDATE),
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> Response:
    """Change your password; your other sessions end."""
    context.auth.change_password(principal, body.current_password, body.new_password, where)
    return Response(status_code=HTTP_204_NO_CONTENT)


@router.get("/auth/sessions", response_model=list[OwnSessionOut])
def own_sessions(
    principal: Principal = requires(Permission.ACCOUNT_READ),
    context: AuthContext = provided(AuthContext),
) -> list[OwnSessionOut]:
    """Where you are signed in: your sessions, newest first. Not for a key restricted to
    one project: it reaches that project and nothing about the account."""
    if principal.project_id is not None:
        raise Forbidden("a key restricted to one project cannot list your sessions")
    return [
        OwnSessionOut(
            id=session_ref(s.id_hash),
            current=s.id_hash == principal.session_hash,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            address=s.address,
            user_agent=s.user_agent,
        )
        for s in context.auth.own_sessions(principal)
    ]


@router.delete("/auth/sessions/{session_id}", status_code=HTTP_204_NO_CONTENT)
def end_own_session(
    session_id: str,
    principal: Principal = requires(Permission.ACCOUNT_UPDATE),
    context: AuthContext = provided(AuthContext),
    where: SignInContext = Depends(sign_in_context),
) -> Response:
    """Sign out one of your sessions (on another device, or this one)."""
    context.auth.end_own_session(principal, session_id, where)
    return Response(status_code=HTTP_204_NO_CONTENT)


def key_out(key: KeyInfo, owner: str) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        owner=owner,
        kind=key.kind,
        scope=key.scope,
        project_id=key.project_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        last_used_address=key.last_used_address,
        revoked_at=key.revoked_at,
    )


@router.get("/keys", response_model=list[KeyOut])
def list_keys(
    everyone: bool = False,
    principal: Principal = requires(Permission.KEYS_READ),
    context: AuthContext = provided(AuthContext),
    users: UserService = provided(UserService),
) -> list[KeyOut]:
    """Your API keys (admins: ``?everyone=true`` for all). Secrets are never shown again."""
    names = {user.id: user.username for user in users.list_all()}
    keys = context.keys.list_keys(principal, everyone=everyone)
    return [key_out(key, names.get(key.user_id, "?")) for key in keys]


@router.post("/keys", status_code=HTTP_201_CREATED, response_model=KeyCreated)
def create_key(
    request: Request,
    body: KeyCreate,
    principal: Principal = requires(Permission.KEYS_WRITE),
    context: AuthContext = provided(AuthContext),
) -> KeyCreated:
    """Create an API key for yourself. The response holds the key once; store it now."""
    key, token = context.keys.create(
        principal,
        name=body.name,
        scope=body.scope,
        project_id=body.project_id,
        days=body.expires_in_days,
        never_expires=body.never_expires,
        address=client_address(request),
    )
    return KeyCreated(**key_out(key, principal.username).model_dump(), token=token)


@router.delete("/keys/{key_id}", status_code=HTTP_204_NO_CONTENT)
def revoke_key(
    request: Request,
    key_id: str,
    principal: Principal = requires(Permission.KEYS_WRITE),
    context: AuthContext = provided(AuthContext),
) -> Response:
    """Revoke a key (yours; admins: anyone's). Effective at once."""
    context.keys.revoke(principal, key_id, client_address(request))
    return Response(status_code=HTTP_204_NO_CONTENT)


users_router = APIRouter(prefix="/api/v1/users")


@users_router.get("", response_model=list[UserOut])
def list_users(
    _: Principal = requires(Permission.USERS_READ), users: UserService = provided(UserService)
) -> list[UserOut]:
    return [user_out(user) for user in users.list_all()]


@users_router.post("", status_code=HTTP_201_CREATED, response_model=UserOut)
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


@users_router.patch("/{username}", response_model=UserOut)
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


@users_router.delete("/{username}", status_code=HTTP_204_NO_CONTENT)
def delete_user(
    request: Request,
    username: str,
    principal: Principal = requires(Permission.USERS_MANAGE),
    service: UserService = provided(UserService),
) -> Response:
    """Delete an account: its sessions and keys stop at once, its runs stay with their
    projects, the audit log keeps its name. The last active admin cannot be deleted."""
    service.delete(username, actor=principal.actor, address=client_address(request))
    return Response(status_code=HTTP_204_NO_CONTENT)


@users_router.post("/{username}/invite", response_model=InviteOut)
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


@users_router.get("/{username}/sessions", response_model=list[UserSessionOut])
def user_sessions(
    username: str,
    _: Principal = requires(Permission.USERS_READ),
    users: UserService = provided(UserService),
) -> list[UserSessionOut]:
    return [
        UserSessionOut(
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            address=s.address,
            user_agent=s.user_agent,
        )
        for s in users.sessions(username)
    ]


@users_router.delete("/{username}/sessions", status_code=HTTP_204_NO_CONTENT)
def revoke_user_sessions(
    request: Request,
    username: str,
    principal: Principal = requires(Permission.USERS_MANAGE),
    users: UserService = provided(UserService),
) -> Response:
    """End every session of the user (their API keys are not affected)."""
    users.revoke_sessions(username, actor=principal.actor, address=client_address(request))
    return Response(status_code=HTTP_204_NO_CONTENT)
