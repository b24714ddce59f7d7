"""Sign-in and sessions: passwords, startup links, invitations, logout, password change,
and turning a session cookie back into a principal (S4, S5, S6).

Each use case is one transaction, and its audit entry commits with it (S16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from safeboard.accounts import repository as accounts
from safeboard.accounts.passwords import PasswordHasher, check_new_password
from safeboard.accounts.ratelimit import LoginThrottle, throttle_keys
from safeboard.accounts.repository import User
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.identity import Presented, unauthenticated
from safeboard.auth.permissions import CredentialKind, Scope
from safeboard.auth.principal import Principal
from safeboard.auth.tokens import (
    binding_hash,
    csrf_token_for,
    new_token,
    session_hash,
    sha256_hex,
    tokens_equal,
)
from safeboard.clock import utcnow
from safeboard.errors import NotFound, RateLimited
from safeboard.settings import Settings
from safeboard.storage import writer

__all__ = [
    "AuthService",
    "NewSession",
    "SessionCookieProvider",
    "SignInContext",
    "session_ref",
]

STARTUP_TOKEN_LIFETIME = timedelta(minutes=15)
_TOUCH_EVERY = timedelta(seconds=60)  # last-seen updates are coarse: one write a minute
_BAD_LOGIN = "invalid user name or password"
SESSION_REF_CHARS = 16  # how a session is named to its owner: a prefix of its row's hash


@dataclass(frozen=True)
class SignInContext:
    """Where a sign-in comes from, for the session row, throttling and the audit log."""

    address: str
    user_agent: str = ""


@dataclass(frozen=True)
class NewSession:
    session_id: str  # the cookie value; shown to nobody else, stored only as an HMAC
    binding: str  # in the sign-in response's body only; stored only as an HMAC
    csrf_token: str
    user: User
    expires_at: datetime

    def __repr__(self) -> str:
        return f"NewSession(user={self.user.username!r}, expires_at={self.expires_at!r})"


def session_ref(id_hash: str) -> str:
    return id_hash[:SESSION_REF_CHARS]


class AuthService:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        hasher: PasswordHasher,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine  # reads
        self.tx = writer(engine)  # changes
        self.hasher = hasher
        self.throttle = LoginThrottle(settings.auth)
        self.clock = clock
        self._key = settings.secure.session_secret.get_secret_value()
        self._idle = timedelta(minutes=settings.auth.session_idle_minutes)
        self._lifetime = timedelta(days=settings.auth.session_max_days)

    # Sessions

    def csrf_token(self, session_id: str) -> str:
        return csrf_token_for(self._key, session_id)

    def session_principal(self, session_id: str, binding: str | None) -> Principal | None:
        """The principal of a live session presented with its binding secret; None when
        the binding is missing or wrong (the row stays: whoever holds only the cookie,
        such as another service on this host, must not be able to end the session), and
        None (the row gone) once it has expired."""
        now = self.clock()
        id_hash = session_hash(self._key, session_id)
        with self.engine.connect() as conn:
            session = accounts.get_session(conn, id_hash)
            user = accounts.get(conn, session.user_id) if session else None
        if session is None:
            return None
        presented = binding_hash(self._key, binding or "")
        if not binding or not tokens_equal(presented, session.binding_hash):
            return None
        expired = now >= session.expires_at or now - session.last_seen_at >= self._idle
        if expired or user is None or not user.is_active:
            with self.tx.begin() as conn:
                accounts.delete_session(conn, id_hash)
            return None
        if now - session.last_seen_at >= _TOUCH_EVERY:
            with self.tx.begin() as conn:
                accounts.touch_session(conn, id_hash, now)
        return Principal(
            user_id=user.id,
            username=user.username,
            role=user.role,
            credential=CredentialKind.SESSION,
            scope=Scope.ADMIN,
            session_hash=id_hash,
        )

    def _open_session(self, conn: Connection, user: User, where: SignInContext) -> NewSession:
        now = self.clock()
        session_id, binding = new_token(), new_token()
        session = accounts.SessionInfo(
            id_hash=session_hash(self._key, session_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._lifetime,
            address=where.address,
            user_agent=where.user_agent,
            binding_hash=binding_hash(self._key, binding),
        )
        accounts.create_session(conn, session)
        csrf = self.csrf_token(session_id)
        return NewSession(session_id, binding, csrf, user, session.expires_at)

    # Sign-in

    def login_password(self, username: str, password: str, where: SignInContext) -> NewSession:
        """Unknown user, wrong password and disabled account look the same: status, body and
        the time spent (a dummy hash is verified when there is nothing to verify)."""
        now = self.clock()
        keys = throttle_keys(username, where.address)
        with self.tx.begin() as conn:
            attempt = self.throttle.begin_attempt(conn, keys, now)
        if attempt.wait is not None:
            # Not audited one by one: a flood of refused guesses must not flood the log.
            wait = attempt.wait
            raise RateLimited(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
        with self.engine.connect() as conn:
            user = accounts.get_by_username(conn, username)
            stored = accounts.password_hash(conn, user.id) if user and user.is_active else None
        # Always verify (a dummy hash when there is no user): no short-cut, no timing tell.
        verified = self.hasher.verify(stored, password)
        if user is None or not user.is_active or not verified:
            # The attempt was counted above; only the audit entry is left to write.
            self._audit_failure(user.username if user else None, where)
            raise unauthenticated(_BAD_LOGIN)
        assert stored is not None  # noqa: S101  (verify() is False without a hash)
        with self.tx.begin() as conn:
            if self.hasher.needs_rehash(stored):
                accounts.set_password_hash(conn, user.id, self.hasher.hash(password), now)
            self.throttle.succeeded(conn, attempt)
            session = self._open_session(conn, user, where)
            audit.append(
                conn,
                action=AuditAction.LOGIN_OK,
                actor=f"user:{user.username}",
                target=f"user:{user.username}",
                address=where.address,
                detail={"via": "password"},
            )
        return session

    def _audit_failure(self, username: str | None, where: SignInContext) -> None:
        """Record a failed sign-in. An unknown name is not recorded: people type passwords
        into the name field, and the log keeps everything for good."""
        with self.tx.begin() as conn:
            audit.append(
                conn,
                action=AuditAction.LOGIN_FAILED,
                actor="anonymous",
                target=f"user:{username}" if username else "unknown user",
                outcome="denied",
                address=where.address,
            )

    def login_startup(self, token: str, where: SignInContext) -> NewSession:
        """Trade a startup link's token (single use, 15 minutes) for a session (S4)."""
        return self._redeem(token, "startup", AuditAction.STARTUP_LINK_USED, where)

    def accept_invite(self, token: str, password: str, where: SignInContext) -> NewSession:
        """Set the invited user's password and sign them in; the invitation is then spent."""
        return self._redeem(token, "invite", AuditAction.INVITE_USED, where, password=password)

    def invited_user(self, token: str) -> User:
        """Whom a valid invitation is for, without spending it (the invite page names them).
        Any other token gets the error a spent one gets: nothing is told without a valid
        token (256 random bits, S4)."""
        with self.engine.connect() as conn:
            user_id = accounts.find_token(conn, sha256_hex(token), "invite", self.clock())
            user = accounts.get(conn, user_id) if user_id is not None else None
        if user is None or not user.is_active:
            raise unauthenticated("this invite link is invalid, used or expired")
        return user

    def _redeem(
        self,
        token: str,
        purpose: str,
        action: AuditAction,
        where: SignInContext,
        password: str | None = None,
    ) -> NewSession:
        now = self.clock()
        with self.tx.begin() as conn:
            user_id = accounts.consume_token(conn, sha256_hex(token), purpose, now)
            user = accounts.get(conn, user_id) if user_id is not None else None
            if user is None or not user.is_active:
                # The UPDATE above changed nothing, or is rolled back with this error.
                raise unauthenticated(f"this {purpose} link is invalid, used or expired")
            if password is not None:
                check_new_password(password, username=user.username)
                accounts.set_password_hash(conn, user.id, self.hasher.hash(password), now)
                accounts.delete_user_sessions(conn, user.id)  # a new password: old sessions end
                user = replace(user, has_password=True)  # the session says so at once
            session = self._open_session(conn, user, where)
            audit.append(
                conn,
                action=action,
                actor=f"user:{user.username}",
                target=f"user:{user.username}",
                address=where.address,
            )
        return session

    def logout(self, principal: Principal, where: SignInContext) -> None:
        with self.tx.begin() as conn:
            if principal.session_hash is not None:
                accounts.delete_session(conn, principal.session_hash)
            audit.append(
                conn,
                action=AuditAction.LOGOUT,
                actor=principal.actor,
                target=f"user:{principal.username}",
                address=where.address,
            )

    def own_sessions(self, principal: Principal) -> list[accounts.SessionInfo]:
        """The signed-in sessions of the principal's user, newest first."""
        with self.engine.connect() as conn:
            return accounts.list_sessions(conn, principal.user_id)

    def end_own_session(self, principal: Principal, ref: str, where: SignInContext) -> None:
        """End one of your sessions, named by ``session_ref``; other users' are not found."""
        with self.tx.begin() as conn:
            found = [
                s
                for s in accounts.list_sessions(conn, principal.user_id)
                if session_ref(s.id_hash) == ref
            ]
            if not found:
                raise NotFound("no such session")
            accounts.delete_session(conn, found[0].id_hash)
            audit.append(
                conn,
                action=AuditAction.SESSIONS_REVOKED,
                actor=principal.actor,
                target=f"user:{principal.username}",
                address=where.address,
                detail={"sessions_ended": 1},
            )

    def change_password(
        self, principal: Principal, current: str, new: str, where: SignInContext
    ) -> int:
        """Change your own password; every other session of yours ends. Returns how many."""
        now = self.clock()
        keys = throttle_keys(principal.username, where.address)
        with self.tx.begin() as conn:
            attempt = self.throttle.begin_attempt(conn, keys, now)
        if attempt.wait is not None:
            wait = attempt.wait
            raise RateLimited(f"too many wrong passwords; try again in {wait} s", retry_after=wait)
        with self.engine.connect() as conn:
            stored = accounts.password_hash(conn, principal.user_id)
        if stored is not None and not self.hasher.verify(stored, current):
            raise unauthenticated("current password is wrong")
        with self.tx.begin() as conn:
            self.throttle.succeeded(conn, attempt)
        check_new_password(new, username=principal.username)
        with self.tx.begin() as conn:
            accounts.set_password_hash(conn, principal.user_id, self.hasher.hash(new), now)
            ended = accounts.delete_user_sessions(
                conn, principal.user_id, keep=principal.session_hash
            )
            audit.append(
                conn,
                action=AuditAction.PASSWORD_CHANGED,
                actor=principal.actor,
                target=f"user:{principal.username}",
                address=where.address,
                detail={"sessions_ended": ended},
            )
        return ended

    # One-time tokens

    def void_startup_tokens(self) -> None:
        """Every unused startup token dies (each start does this, link or no link)."""
        with self.tx.begin() as conn:
            accounts.delete_unused_tokens(conn, "startup")

    def mint_startup_token(self, user_id: int) -> str:
        """A new startup token; every unused one from before (an earlier start) dies."""
        now = self.clock()
        token = new_token()
        with self.tx.begin() as conn:
            accounts.delete_unused_tokens(conn, "startup")
            accounts.create_token(
                conn,
                token_hash=sha256_hex(token),
                purpose="startup",
                user_id=user_id,
                now=now,
                expires_at=now + STARTUP_TOKEN_LIFETIME,
            )
        return token


class SessionCookieProvider:
    """The identity chain's provider for the session cookie (with its binding header)."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    def remembered(self, presented: Presented) -> Principal | None:  # noqa: ARG002
        return None  # a session is looked up each time (its idle limit moves with use)

    def identify(self, presented: Presented) -> Principal | None:
        if presented.authorization is not None or not presented.session_cookie:
            return None
        return self.auth.session_principal(presented.session_cookie, presented.binding)
