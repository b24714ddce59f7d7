"""Account management: add, invite, disable and enable, set password or role, end
sessions. Used by the admin API and by ``safeboard user ...`` on the server's machine.

``actor`` names who acts, for the audit log ("user:alice (session)", "cli:root").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from safeboard.accounts import repository as accounts
from safeboard.accounts.passwords import PasswordHasher, check_new_password
from safeboard.accounts.repository import SessionInfo, User
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.permissions import Role
from safeboard.auth.tokens import new_token, sha256_hex
from safeboard.clock import utcnow
from safeboard.errors import Conflict, NotFound
from safeboard.settings import Settings
from safeboard.storage import writer

__all__ = ["UserService"]


class UserService:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        hasher: PasswordHasher,
        clock: Callable[[], datetime] = utcnow,
        *,
        keys_changed: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine  # reads
        self.tx = writer(engine)  # changes
        self.hasher = hasher
        self.clock = clock
        # Called with a user id after a change that ends or narrows their keys (disabled, a
        # new role): this replica's remembered key verifications go at once
        # (``ApiKeyService.forget_user``); other replicas' within a second.
        self._keys_changed = keys_changed or (lambda _user_id: None)
        self.invite_lifetime = timedelta(hours=settings.auth.invite_hours)

    def _user(self, conn: Connection, username: str) -> User:
        user = accounts.get_by_username(conn, username)
        if user is None:
            raise NotFound(f"no user {username}")
        return user

    def list_all(self) -> list[User]:
        with self.engine.connect() as conn:
            return accounts.list_users(conn)

    def get(self, username: str) -> User:
        with self.engine.connect() as conn:
            return self._user(conn, username)

    def add(
        self, username: str, *, role: Role, actor: str, display_name: str = "", address: str = ""
    ) -> User:
        with self.tx.begin() as conn:
            user = accounts.create(
                conn, username=username, role=role, now=self.clock(), display_name=display_name
            )
            audit.append(
                conn,
                action=AuditAction.USER_CREATED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
                detail={"role": role.value},
            )
        return user

    def ensure_admin(self, username: str, *, actor: str) -> User:
        """The admin account of the OS user who runs the server; made at first start."""
        with self.engine.connect() as conn:
            existing = accounts.get_by_username(conn, username)
        if existing is not None:
            return existing
        try:
            return self.add(username, role=Role.ADMIN, actor=actor)
        except Conflict:  # another replica made it a moment ago
            return self.get(username)

    def invite(self, username: str, *, actor: str, address: str = "") -> tuple[User, str]:
        """A one-time token (24 hours by default) with which the user sets a password.

        Earlier unused invitations of that user stop working.
        """
        now = self.clock()
        token = new_token()
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            accounts.delete_unused_tokens(conn, "invite", user.id)
            accounts.create_token(
                conn,
                token_hash=sha256_hex(token),
                purpose="invite",
                user_id=user.id,
                now=now,
                expires_at=now + self.invite_lifetime,
            )
            audit.append(
                conn,
                action=AuditAction.INVITE_ISSUED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
            )
        return user, token

    def set_password(self, username: str, password: str, *, actor: str, address: str = "") -> int:
        """Set a user's password (admin action); all their sessions end. Returns how many."""
        now = self.clock()
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            check_new_password(password, username=user.username)
            accounts.set_password_hash(conn, user.id, self.hasher.hash(password), now)
            ended = accounts.delete_user_sessions(conn, user.id)
            audit.append(
                conn,
                action=AuditAction.PASSWORD_CHANGED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
                detail={"sessions_ended": ended},
            )
        return ended

    def set_role(self, username: str, role: Role, *, actor: str, address: str = "") -> User:
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            revoked = 0
            if user.role is Role.ADMIN and role is not Role.ADMIN:
                if user.is_active:
                    self._keep_an_admin(conn)
                # Keys that never expire are an admin's privilege: they go with the role.
                revoked = accounts.revoke_user_keys(
                    conn, user.id, self.clock(), only_unexpiring=True
                )
            accounts.set_role(conn, user.id, role)
            audit.append(
                conn,
                action=AuditAction.ROLE_CHANGED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
                detail={"from": user.role.value, "to": role.value, "keys_revoked": revoked},
            )
            changed = self._user(conn, username)
        self._keys_changed(user.id)
        return changed

    def set_active(self, username: str, active: bool, *, actor: str, address: str = "") -> User:
        """Disable (sessions end, keys stop at once) or enable an account."""
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            if not active and user.role is Role.ADMIN and user.is_active:
                self._keep_an_admin(conn)
            accounts.set_active(conn, user.id, active)
            ended = 0 if active else accounts.delete_user_sessions(conn, user.id)
            audit.append(
                conn,
                action=AuditAction.USER_ENABLED if active else AuditAction.USER_DISABLED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
                detail={"sessions_ended": ended},
            )
            changed = self._user(conn, username)
        self._keys_changed(user.id)
        return changed

    def delete(self, username: str, *, actor: str, address: str = "") -> dict[str, int]:
        """Delete an account (issue 18): its sessions end and its keys stop at once (their
        rows go with it), its grants go; its runs, artifacts and tasks stay with their
        projects (their creator reads as none); the audit log keeps the name. The last
        active admin cannot be deleted."""
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            if user.role is Role.ADMIN and user.is_active:
                self._keep_an_admin(conn)
            ended = accounts.delete_user_sessions(conn, user.id)
            revoked = accounts.revoke_user_keys(conn, user.id, self.clock())
            accounts.delete_user(conn, user.id)
            done = {"sessions_ended": ended, "keys_revoked": revoked}
            audit.append(conn, action=AuditAction.USER_DELETED, actor=actor,
                         target=f"user:{user.username}", address=address,
                         detail={**done, "role": user.role.value})  # fmt: skip
        self._keys_changed(user.id)
        return done

    @staticmethod
    def _keep_an_admin(conn: Connection) -> None:
        if accounts.count_active_admins(conn) <= 1:
            raise Conflict("this is the last active admin: make another admin first")

    def sessions(self, username: str) -> list[SessionInfo]:
        with self.engine.connect() as conn:
            return accounts.list_sessions(conn, self._user(conn, username).id)

    def revoke_sessions(self, username: str, *, actor: str, address: str = "") -> int:
        with self.tx.begin() as conn:
            user = self._user(conn, username)
            ended = accounts.delete_user_sessions(conn, user.id)
            audit.append(
                conn,
                action=AuditAction.SESSIONS_REVOKED,
                actor=actor,
                target=f"user:{user.username}",
                address=address,
                detail={"sessions_ended": ended},
            )
        return ended
