"""Agents' use cases: join tokens, enrollment, hello, listing and revocation, and the
identity provider for ``Authorization: Bearer sb_agent_...`` (S9, S13, S14, S16).

Each use case is one transaction (``writer(engine)``); every change is audited in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from safeboard.agents import repository as agents
from safeboard.agents.credentials import (
    JoinSecret,
    format_join_string,
    new_agent_secret,
    new_join_secret,
    parse_agent_credential,
    parse_join_secret,
    spki_pin,
)
from safeboard.agents.queries import REVOKED, CurrentTask
from safeboard.agents.repository import Agent, JoinToken
from safeboard.audit import repository as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.identity import Presented, unauthenticated
from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.auth.tokens import sha256_hex, tokens_equal
from safeboard.clock import utcnow
from safeboard.errors import (
    AgentCredentialInvalid,
    AgentRevoked,
    InvalidRequest,
    JoinTokenInvalid,
    NotFound,
    RateLimited,
)
from safeboard.storage import writer

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "AgentProvider",
    "AgentService",
    "AgentWork",
    "EnrollThrottle",
    "Inventory",
    "NewJoinToken",
    "RevocationHook",
]

DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(days=7)
_TOUCH_EVERY = timedelta(seconds=60)
INVALID_JOIN = (
    "invalid join token: unknown, mistyped, expired or already used; ask an admin for a "
    "new one (`safeboard agent token --pool POOL`)"
)
INVALID_AGENT = (
    "invalid agent credential: enroll this machine again with a new join token "
    "(`safeboard agent join`)"
)
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class EnrollThrottle(Protocol):
    """The sign-in throttle (``accounts/ratelimit.py: LoginThrottle``), passed in by the
    composition root: failed enrollments lock out like failed sign-ins (S5)."""

    def retry_after(self, conn: Connection, keys: Sequence[str], now: datetime) -> int | None: ...

    def record_failure(
        self, conn: Connection, keys: Sequence[str], now: datetime
    ) -> int | None: ...


class RevocationHook(Protocol):
    """What a revocation does to the agent's work (jobs: its live attempts end ``lost``
    and their tasks are requeued), passed in by the composition root. Called in the
    revoking transaction; returns what to do after its commit."""

    def __call__(self, conn: Connection, agent_id: str, now: datetime) -> Callable[[], None]: ...


class AgentWork(Protocol):
    """What each agent runs now (jobs: its live attempts), by agent id, passed in by the
    composition root."""

    def __call__(self, conn: Connection) -> dict[str, list[CurrentTask]]: ...


@dataclass(frozen=True)
class NewJoinToken:
    token: JoinToken
    join_string: str  # shown once, never again retrievable
    url: str
    pin: str

    def __repr__(self) -> str:
        return f"NewJoinToken(token={self.token!r}, join_string='**********')"


@dataclass(frozen=True)
class Inventory:
    """What an agent reports in its hello."""

    hostname: str
    version: str
    gpus: list[dict[str, Any]]
    cpus: int | None
    memory_mib: int | None
    labels: list[str]


@dataclass(frozen=True)
class _Arrival:
    """Who is enrolling: what the machine says of itself, and where it calls from."""

    hostname: str
    version: str
    labels: tuple[str, ...]
    address: str


def _name_from(hostname: str, agent_id: str) -> str:
    name = _NAME.sub("-", hostname.strip()).strip("-.")[:80]
    return name or f"agent-{agent_id}"


class AgentService:
    def __init__(
        self,
        engine: Engine,
        *,
        throttle: EnrollThrottle,
        throttle_keys: Callable[[str, str], list[str]],
        trust_anchor: bytes | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_revoked: RevocationHook | None = None,
        work: AgentWork | None = None,
    ) -> None:
        self.engine = engine  # reads
        self.tx = writer(engine)  # changes
        self.clock = clock
        self._throttle = throttle
        self._throttle_keys = throttle_keys
        # The certificate (DER) a client of this server pins: the generated CA, or the
        # top CA of a given chain; None when this process serves no TLS itself.
        self._pin = spki_pin(trust_anchor) if trust_anchor is not None else None
        self._on_revoked = on_revoked
        self.work = work

    # --- admins ----------------------------------------------------------------------

    def create_join_token(
        self,
        admin: Principal,
        *,
        pool: str,
        labels: Sequence[str],
        ttl: timedelta | None,
        url: str,
        ca_pin: str | None = None,
        address: str = "",
    ) -> NewJoinToken:
        """A one-time join token; the join string is returned here only. The pin is the
        SHA-256 of this server's CA key (``ca_pin`` only where TLS ends at a proxy)."""
        lifetime = ttl or DEFAULT_TTL
        if not timedelta(seconds=60) <= lifetime <= MAX_TTL:
            raise InvalidRequest("ttl_seconds: from 60 s to 7 days")
        pin = self._pin_for(url, ca_pin)
        now = self.clock()
        secret = new_join_secret()
        token = JoinToken(
            id=secret.id,
            pool=pool,
            labels=tuple(sorted(set(labels))),
            created_by=admin.actor,
            created_at=now,
            expires_at=now + lifetime,
            used_at=None,
            used_by_agent=None,
            secret_hash=sha256_hex(secret.secret),
        )
        with self.tx.begin() as conn:
            agents.create_token(conn, token)
            audit.append(
                conn,
                action=AuditAction.AGENT_JOIN_TOKEN_CREATED,
                actor=admin.actor,
                target=f"join_token:{token.id}",
                address=address,
                detail={
                    "pool": pool,
                    "labels": list(token.labels),
                    "expires_at": token.expires_at.isoformat(),
                },
            )
        return NewJoinToken(token, format_join_string(secret, pin, url), url, pin)

    def _pin_for(self, url: str, given: str | None) -> str:
        if self._pin is not None:
            if given is not None and not tokens_equal(given, self._pin):
                raise InvalidRequest(
                    "ca_pin differs from the CA this server presents: leave it out"
                )
            return self._pin
        if given is not None:
            if not re.fullmatch(r"[A-Za-z0-9_-]{43}", given):
                raise InvalidRequest("ca_pin: the CA key's SHA-256, base64url, 43 characters")
            return given
        if url.startswith("http://"):
            return ""  # plain HTTP: loopback only, which the agent enforces
        raise InvalidRequest(
            "this server does not see the certificate its clients see (TLS ends at a "
            "proxy): give ca_pin, the base64url SHA-256 of that CA's public key"
        )

    def list_agents(self) -> list[Agent]:
        with self.engine.connect() as conn:
            return agents.list_agents(conn)

    def list_with_work(self) -> list[tuple[Agent, list[CurrentTask]]]:
        """Every agent with the tasks it runs now (one read)."""
        with self.engine.connect() as conn:
            found = agents.list_agents(conn)
            work = self.work(conn) if self.work is not None else {}
        return [(agent, work.get(agent.id, [])) for agent in found]

    def revoke(self, admin: Principal, agent_id: str, address: str = "") -> Agent:
        """Revoke at once: the agent's next call is refused (``agent_revoked``), and what
        it was running is given up in the same transaction (``on_revoked``)."""
        now = self.clock()
        after: Callable[[], None] = lambda: None  # noqa: E731
        with self.tx.begin() as conn:
            if agents.get_agent(conn, agent_id) is None:
                raise NotFound("no such agent")
            if agents.revoke_agent(conn, agent_id, now, admin.actor):
                audit.append(
                    conn,
                    action=AuditAction.AGENT_REVOKED,
                    actor=admin.actor,
                    target=f"agent:{agent_id}",
                    address=address,
                )
                if self._on_revoked is not None:
                    after = self._on_revoked(conn, agent_id, now)
            revoked = agents.get_agent(conn, agent_id)
        after()
        assert revoked is not None  # noqa: S101  (read in the same transaction)
        return revoked

    # --- agents ----------------------------------------------------------------------

    def enroll(
        self, token: str, *, hostname: str, version: str, labels: Sequence[str], address: str
    ) -> tuple[Agent, str]:
        """Exchange a join token for an agent and its credential (returned once). One
        refusal (JoinTokenInvalid) for an unknown, wrong, expired or used token; failures
        are throttled per token and per address like sign-ins."""
        parsed = parse_join_secret(token)
        keys = self._throttle_keys(parsed.id if parsed else "-", address)
        now = self.clock()
        with self.engine.connect() as conn:
            wait = self._throttle.retry_after(conn, keys, now)
        if wait is not None:
            raise RateLimited(
                f"too many failed enrollments from here: try again in {wait} s",
                retry_after=wait,
            )
        made = self._enroll(parsed, _Arrival(hostname, version, tuple(labels), address), now)
        if made is None:
            with self.tx.begin() as conn:
                self._throttle.record_failure(conn, keys, now)
                audit.append(
                    conn,
                    action=AuditAction.AGENT_ENROLLED,
                    actor=f"join_token:{parsed.id}" if parsed else "join_token:?",
                    target="agent:-",
                    outcome="failed",
                    address=address,
                    detail={"hostname": hostname[:200]},
                )
            raise unauthenticated(INVALID_JOIN, JoinTokenInvalid)
        return made

    def _enroll(
        self, parsed: JoinSecret | None, arrival: _Arrival, now: datetime
    ) -> tuple[Agent, str] | None:
        hostname, version, address = arrival.hostname, arrival.version, arrival.address
        with self.tx.begin() as conn:
            stored = agents.get_token(conn, parsed.id) if parsed else None
            # Compare a hash even for an unknown id, so both cases cost the same.
            expected = stored.secret_hash if stored else sha256_hex("")
            matches = tokens_equal(sha256_hex(parsed.secret if parsed else ""), expected)
            if stored is None or not matches:
                return None
            secret = new_agent_secret()
            if not agents.consume_token(conn, stored.id, secret.id, now):
                return None  # used, expired, or taken by a concurrent enrollment
            agent = Agent(
                id=secret.id,
                name=_name_from(hostname, secret.id),
                pool=stored.pool,
                labels=stored.labels,
                created_at=now,
                created_by=stored.created_by,
                revoked_at=None,
                revoked_by=None,
                last_seen_at=now,
                last_address=address,
                version=version,
                hostname=hostname,
                inventory={"labels": sorted(set(arrival.labels))},
                inventory_at=None,
                secret_hash=sha256_hex(secret.secret),
            )
            agents.create_agent(conn, agent, join_token=stored.id)
            audit.append(
                conn,
                action=AuditAction.AGENT_ENROLLED,
                actor=f"agent:{agent.name} ({agent.id})",
                target=f"agent:{agent.id}",
                address=address,
                detail={
                    "join_id": stored.id,
                    "invited_by": stored.created_by,
                    "pool": agent.pool,
                    "hostname": hostname[:200],
                    "version": version[:64],
                },
            )
        return agent, secret.token

    def hello(self, agent: Principal, inventory: Inventory) -> Agent:
        """Store what the agent reports about its machine."""
        assert agent.agent_id is not None  # noqa: S101  (AGENT_CALL: an agent's principal)
        now = self.clock()
        with self.tx.begin() as conn:
            agents.set_inventory(
                conn,
                agent.agent_id,
                hostname=inventory.hostname,
                version=inventory.version,
                inventory={
                    "gpus": inventory.gpus,
                    "cpus": inventory.cpus,
                    "memory_mib": inventory.memory_mib,
                    "labels": sorted(set(inventory.labels)),
                },
                now=now,
            )
            found = agents.get_agent(conn, agent.agent_id)
        if found is None:
            raise NotFound("no such agent")
        return found

    # --- identity --------------------------------------------------------------------

    def principal(self, token: str, address: str) -> Principal:
        """The principal behind an agent credential, or Unauthenticated: ``agent_invalid``
        (unknown, wrong secret), ``agent_revoked`` (to whoever holds the whole secret)."""
        parsed = parse_agent_credential(token)
        if parsed is None:
            raise unauthenticated(INVALID_AGENT, AgentCredentialInvalid)
        now = self.clock()
        with self.engine.connect() as conn:
            agent = agents.get_agent(conn, parsed.id)
        expected = agent.secret_hash if agent else sha256_hex("")
        if agent is None or not tokens_equal(sha256_hex(parsed.secret), expected):
            raise unauthenticated(INVALID_AGENT, AgentCredentialInvalid)
        if agent.revoked_at is not None:
            raise unauthenticated(REVOKED, AgentRevoked)
        stale = agent.last_seen_at is None or now - agent.last_seen_at >= _TOUCH_EVERY
        if stale or agent.last_address != address:
            with self.tx.begin() as conn:
                agents.touch_agent(conn, agent.id, now, address)
        return Principal(
            user_id=0,
            username=f"agent:{agent.name}",
            role=Role.MEMBER,
            credential=CredentialKind.AGENT,
            scope=Scope.WRITE,
            agent_id=agent.id,
        )


class AgentProvider:
    """The identity chain's provider for ``Authorization: Bearer sb_agent_...``. Nothing
    is remembered: every call is looked up, so a revocation holds from the next call."""

    PREFIX = "sb_agent_"

    def __init__(self, agents: AgentService) -> None:
        self.agents = agents

    def remembered(self, presented: Presented) -> Principal | None:  # noqa: ARG002
        return None

    def identify(self, presented: Presented) -> Principal | None:
        token = presented.bearer
        if token is None or not token.startswith(self.PREFIX):
            return None
        return self.agents.principal(token, presented.address)
