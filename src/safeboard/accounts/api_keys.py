"""API keys (S8): ``sb_<id>_<secret>``, secret of 256 bits, only its SHA-256 stored, shown
once. Looked up in the database, then trusted for at most ``VERIFIED_FOR`` seconds (a
sweep's runs post every half second: P9): revocation, expiry and a disabled owner take
effect within that time on every replica, at once on the replica that revoked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine

from safeboard.accounts import repository as accounts
from safeboard.accounts.repository import KeyInfo
from safeboard.accounts.standing import read_credentials, standing_role
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.identity import INVALID_KEY, NEW_KEY, Presented, unauthenticated
from safeboard.auth.permissions import CredentialKind, ProjectRole, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.auth.tokens import new_api_key, parse_api_key, sha256_hex, tokens_equal
from safeboard.clock import utcnow
from safeboard.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    Forbidden,
    InvalidApiKey,
    InvalidRequest,
    NotFound,
)
from safeboard.settings import Settings
from safeboard.storage import writer

__all__ = ["VERIFIED_FOR", "ApiKeyProvider", "ApiKeyService", "ProjectGrants"]

_TOUCH_EVERY = timedelta(seconds=60)
VERIFIED_FOR = 1.0  # seconds a verified key is trusted without the database
_VERIFIED_MAX = 10_000  # keys remembered at once; past that the memory starts afresh
_NO_IDLE = timedelta(0)  # standing_role's session idle limit: keys have none


@dataclass(frozen=True)
class _Verified:
    """A key found good: by whom it was presented (the whole secret's hash, the address)
    and when, in ``time.monotonic`` seconds."""

    secret_hash: str
    address: str
    principal: Principal
    expires_at: datetime | None
    touched_at: datetime  # its last use as the database has it (written once a minute)
    checked_at: float


class ProjectGrants(Protocol):
    """The projects domain's answer when a key is bound to a project: whether the project
    exists, and the account's role in it (None: no grant). Accounts sit below projects, so
    it is passed in where the service is built (``projects.repository.grant_in``)."""

    def __call__(
        self, conn: Connection, project_id: int, user_id: int
    ) -> tuple[bool, ProjectRole | None]: ...


class ApiKeyService:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        *,
        project_grants: ProjectGrants,
    ) -> None:
        self.engine = engine  # reads
        self.tx = writer(engine)  # changes
        self.clock = clock
        self._default_days = settings.auth.api_key_days
        self._project_grants = project_grants
        self.monotonic = time.monotonic
        # key id -> the last verification: one database look-up per key and second, not
        # per request. Plain dict operations (atomic under the GIL) from request threads.
        self._verified: dict[str, _Verified] = {}
        self._rechecking = threading.Lock()  # one bulk re-check at a time (``_recheck``)

    def principal(self, token: str, address: str) -> Principal:
        """The principal behind a bearer key, or Unauthenticated: ``key_invalid`` for an
        unknown key, a wrong secret or a disabled owner; ``key_revoked`` / ``key_expired``
        only to whoever presents the key's whole secret (it tells them nothing new about
        anyone else's key: docs/security.md, "What an API key's refusal says").

        A key verified less than ``VERIFIED_FOR`` seconds ago is answered from memory when
        the same whole secret (its hash, compared in constant time) comes from the same
        address; anything else is looked up again."""
        parsed = parse_api_key(token)
        if parsed is None:
            raise unauthenticated(INVALID_KEY, InvalidApiKey)
        now = self.clock()
        presented = sha256_hex(parsed.secret)
        known = self._known(parsed.id, presented, address, now)
        if known is not None and (
            self.monotonic() - known.checked_at < VERIFIED_FOR
            or self._recheck(parsed.id, now, known)
        ):
            return known.principal
        checked_at = self.monotonic()
        with self.engine.connect() as conn:
            key = accounts.get_key(conn, parsed.id)
            # Compare a hash even for an unknown id, so both cases cost the same.
            expected = key.secret_hash if key else sha256_hex("")
            matches = tokens_equal(presented, expected)
            user = accounts.get(conn, key.user_id) if key and matches else None
        if key is None or not matches or user is None or not user.is_active:
            self._verified.pop(parsed.id, None)
            raise unauthenticated(INVALID_KEY, InvalidApiKey)
        if key.revoked_at is not None:
            self._verified.pop(parsed.id, None)
            raise unauthenticated(f"this API key was revoked: {NEW_KEY}", ApiKeyRevoked)
        if key.expires_at is not None and now >= key.expires_at:
            self._verified.pop(parsed.id, None)
            raise unauthenticated(
                f"this API key expired on {key.expires_at:%Y-%m-%d}: {NEW_KEY}", ApiKeyExpired
            )
        stale = key.last_used_at is None or now - key.last_used_at >= _TOUCH_EVERY
        touched_at = key.last_used_at or now
        if stale or key.last_used_address != address:
            with self.tx.begin() as conn:
                accounts.touch_key(conn, key.id, now, address)
            touched_at = now
        principal = Principal(
            user_id=user.id,
            username=user.username,
            role=user.role,
            credential=CredentialKind.API_KEY,
            scope=key.scope,
            project_id=key.project_id,
            key_id=key.id,
        )
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[key.id] = _Verified(
            presented, address, principal, key.expires_at, touched_at, checked_at
        )
        return principal

    def remembered(self, token: str, address: str) -> Principal | None:
        """The principal of a key verified less than ``VERIFIED_FOR`` seconds ago and
        presented again whole from the same address, answered from memory (no I/O, no
        lock: the event loop asks this first); None: ask ``principal``."""
        parsed = parse_api_key(token)
        if parsed is None:
            return None
        known = self._known(parsed.id, sha256_hex(parsed.secret), address, self.clock())
        if known is None or self.monotonic() - known.checked_at >= VERIFIED_FOR:
            return None
        return known.principal

    def _known(
        self, key_id: str, secret_hash: str, address: str, now: datetime
    ) -> _Verified | None:
        """The key's last verification if it is this secret from this address and the key
        has not expired since."""
        known = self._verified.get(key_id)
        if (
            known is not None
            and known.address == address
            and tokens_equal(secret_hash, known.secret_hash)
            and (known.expires_at is None or now < known.expires_at)
        ):
            return known
        return None

    def _recheck(self, key_id: str, now: datetime, known: _Verified) -> bool:
        """Whether ``key_id``, remembered but due, still stands. Every key remembered for
        over half of VERIFIED_FOR is re-checked with it, in at most three indexed queries
        (``accounts/standing.py``, the event streams' re-check): a sweep's keys cost a few
        queries a second in all, not a look-up per key and second. A request that finds
        another re-checking waits for it (its key is most likely among those re-checked:
        under a sweep all the keys fall due together). A key not re-checked here (its last
        use is due to be written) is looked up alone."""
        with self._rechecking:
            started = self.monotonic()
            again = self._verified.get(key_id)
            if (
                again is not None
                and again.principal == known.principal
                and started - again.checked_at < VERIFIED_FOR
            ):
                return True  # re-checked by the request this one waited for
            due = {
                k: v
                for k, v in list(self._verified.items())
                if started - v.checked_at >= VERIFIED_FOR / 2 and now - v.touched_at < _TOUCH_EVERY
            }
            if key_id not in due:
                return False
            with self.engine.connect() as conn:
                standing = read_credentials(conn, [v.principal for v in due.values()])
            for k, v in due.items():
                stands = standing_role(standing, v.principal, now, _NO_IDLE) is v.principal.role
                if self._verified.get(k) is not v:
                    continue  # forgotten (revoked here) or looked up again meanwhile
                if stands:
                    self._verified[k] = replace(v, checked_at=started)
                else:
                    self._verified.pop(k, None)
            again = self._verified.get(key_id)
            return again is not None and again.checked_at == started

    def forget(self, key_id: str) -> None:
        """Look ``key_id`` up again on its next use (this replica revoked it)."""
        self._verified.pop(key_id, None)

    def forget_user(self, user_id: int) -> None:
        """Look every key of ``user_id`` up again (disabled, or a new role)."""
        for key_id, known in list(self._verified.items()):
            if known.principal.user_id == user_id:
                self._verified.pop(key_id, None)

    def create(
        self,
        owner: Principal,
        *,
        name: str,
        scope: Scope,
        project_id: int | None = None,
        days: int | None = None,
        never_expires: bool = False,
        address: str = "",
        kind: str = "user",
        actor: str | None = None,
    ) -> tuple[KeyInfo, str]:
        """Mint a key for ``owner``; returns it and the token, which is never shown again."""
        if never_expires and owner.role is not Role.ADMIN:
            raise Forbidden("only admins may create keys that never expire")
        if scope is Scope.METRICS and owner.role is not Role.ADMIN:
            raise Forbidden("only admins may create keys of metrics scope (GET /metrics)")
        if scope is Scope.METRICS and project_id is not None:
            raise InvalidRequest(
                "a key of metrics scope reads the whole server's metrics: bind it to no project"
            )
        if never_expires and days is not None:
            raise InvalidRequest("give an expiry in days or never_expires, not both")
        if not name.strip() or len(name) > 100:
            raise InvalidRequest("name: 1 to 100 characters")
        now = self.clock()
        lifetime = None if never_expires else timedelta(days=days or self._default_days)
        secret = new_api_key()
        with self.tx.begin() as conn:
            if project_id is not None:
                exists, grant = self._project_grants(conn, project_id, owner.user_id)
                if not exists or (grant is None and owner.role is not Role.ADMIN):
                    raise NotFound("no such project")
            key = KeyInfo(
                id=secret.id,
                user_id=owner.user_id,
                name=name.strip(),
                kind=kind,
                scope=scope,
                project_id=project_id,
                created_at=now,
                expires_at=now + lifetime if lifetime else None,
                last_used_at=None,
                last_used_address=None,
                revoked_at=None,
                secret_hash=sha256_hex(secret.secret),
            )
            accounts.create_key(conn, key)
            audit.append(
                conn,
                action=AuditAction.KEY_CREATED,
                actor=actor or owner.actor,
                target=f"key:{key.id}",
                address=address,
                detail={
                    "name": key.name,
                    "scope": scope.value,
                    "project_id": project_id,
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                    "kind": kind,
                },
            )
        return key, secret.token

    def list_keys(self, viewer: Principal, *, everyone: bool = False) -> list[KeyInfo]:
        if everyone and viewer.role is not Role.ADMIN:
            raise Forbidden("only admins may list everyone's keys")
        with self.engine.connect() as conn:
            return accounts.list_keys(conn, None if everyone else viewer.user_id)

    def revoke(
        self, actor: Principal, key_id: str, address: str = "", *, audit_actor: str | None = None
    ) -> None:
        now = self.clock()
        with self.tx.begin() as conn:
            key = accounts.get_key(conn, key_id)
            if key is None or (key.user_id != actor.user_id and actor.role is not Role.ADMIN):
                raise NotFound("no such key")
            if accounts.revoke_key(conn, key_id, now):
                audit.append(
                    conn,
                    action=AuditAction.KEY_REVOKED,
                    actor=audit_actor or actor.actor,
                    target=f"key:{key_id}",
                    address=address,
                    detail={"name": key.name},
                )
        self.forget(key_id)  # after the commit: a look-up now sees the revocation

    def revoke_local_keys(self, user_id: int, *, actor: str) -> None:
        """Revoke the discovery file's keys of ``user_id``, each with an audit entry."""
        now = self.clock()
        revoked: list[str] = []
        with self.tx.begin() as conn:
            for key in accounts.list_keys(conn, user_id):
                if key.kind == "local" and key.revoked_at is None:
                    revoked.append(key.id)
                    accounts.revoke_key(conn, key.id, now)
                    audit.append(
                        conn,
                        action=AuditAction.KEY_REVOKED,
                        actor=actor,
                        target=f"key:{key.id}",
                        detail={"name": key.name, "reason": "replaced at start"},
                    )
        for key_id in revoked:
            self.forget(key_id)

    def mint_local_key(self, owner: Principal, *, actor: str) -> str:
        """A new discovery-file key for ``owner``; the previous ones are revoked."""
        self.revoke_local_keys(owner.user_id, actor=actor)
        _, token = self.create(
            owner, name="local (discovery file)", scope=Scope.ADMIN, kind="local", actor=actor
        )
        return token

    def local_key(self, owner: Principal, current: str | None, *, actor: str) -> str:
        """The discovery file's key at a start: ``current`` (the key the file holds) when it
        is still good, so that scripts running across a restart keep working; else a new one.

        Kept only when it is ``owner``'s unrevoked local key, its hash matches, and less
        than half its lifetime has passed (past that, a restart replaces it, so a running
        server never holds a key that is about to expire)."""
        if current is not None and self._local_key_good(owner.user_id, current):
            return current
        return self.mint_local_key(owner, actor=actor)

    def _local_key_good(self, user_id: int, token: str) -> bool:
        parsed = parse_api_key(token)
        if parsed is None:
            return False
        with self.engine.connect() as conn:
            key = accounts.get_key(conn, parsed.id)
        if key is None or not tokens_equal(sha256_hex(parsed.secret), key.secret_hash):
            return False
        now, end = self.clock(), key.expires_at
        half_life = None if end is None else key.created_at + (end - key.created_at) / 2
        return (
            key.kind == "local"
            and key.user_id == user_id
            and key.scope is Scope.ADMIN
            and key.project_id is None
            and key.revoked_at is None
            and (half_life is None or now < half_life)
        )


class ApiKeyProvider:
    """The identity chain's provider for ``Authorization: Bearer sb_...``."""

    def __init__(self, keys: ApiKeyService) -> None:
        self.keys = keys

    def remembered(self, presented: Presented) -> Principal | None:
        token = presented.bearer
        if token is None or not token.startswith("sb_"):
            return None
        return self.keys.remembered(token, presented.address)

    def identify(self, presented: Presented) -> Principal | None:
        token = presented.bearer
        if token is None or not token.startswith("sb_"):
            return None
        return self.keys.principal(token, presented.address)
