"""Task tokens (S14): what a task's process authenticates with. "A task gets the URL,
the CA certificate and a token scoped to its own run that dies with the task; never an
agent's or a user's credential."

- Format ``sb_task_<12 hex id>_<43 url-safe secret>`` (256 bits, as API keys): only the
  SHA-256 of the secret is stored (``task_tokens``), compared in constant time.
- One per attempt, issued by the lease in the lease's own transaction
  (``TaskQueue.lease``), bound to the task, the attempt, its run and the run's project.
- It stands while its attempt is the task's current, live one, and is revoked (in the
  transaction that ends it) when the attempt ends: the exit report, a cancel request, the
  reaper's "lost", or a later attempt's lease. It never outlives the task's maximum
  duration from the lease (``max_seconds``, else ``spec.MAX_SECONDS``).
- Its principal (``CredentialKind.TASK``) reaches its own run only
  (``auth.permissions.RUN_BOUND_ROLE``: read and update the run, write its metrics and
  artifacts) and its task's own record; it acts for the task's submitter (``user_id``:
  uploads count against their quota) and stands only while that account is active.

Nothing is remembered between requests: every one looks its token up, so a revocation
holds from the next request (S14 asks for one second).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from safeboard.accounts import repository as accounts
from safeboard.auth.identity import Presented, unauthenticated
from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.auth.tokens import sha256_hex, tokens_equal
from safeboard.clock import Clock, utcnow
from safeboard.jobs import repository as tasks
from safeboard.jobs.repository import LIVE_STATES
from safeboard.storage import writer

__all__ = [
    "REFUSED",
    "TOKEN_PREFIX",
    "TaskTokenProvider",
    "TaskTokenSecret",
    "TaskTokens",
    "new_task_token",
    "parse_task_token",
]

TOKEN_PREFIX = "sb_task_"  # noqa: S105  (the prefix of every token: not a secret)
_TOKEN = re.compile(r"sb_task_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_LIVE = {state.value for state in LIVE_STATES}
REFUSED = (  # what every refused task token hears (one answer: a guess learns nothing)
    "invalid task token: its task attempt has ended (exited, cancelled, lost or retried), "
    "it expired, or it was never issued"
)


@dataclass(frozen=True)
class TaskTokenSecret:
    id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{TOKEN_PREFIX}{self.id}_{self.secret}"

    def __repr__(self) -> str:
        return f"TaskTokenSecret(id={self.id!r}, secret='**********')"


def new_task_token() -> TaskTokenSecret:
    return TaskTokenSecret(id=secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def parse_task_token(token: str) -> TaskTokenSecret | None:
    match = _TOKEN.fullmatch(token)
    return TaskTokenSecret(match.group(1), match.group(2)) if match else None


class TaskTokens:
    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.tx = writer(engine)
        self.clock = clock

    def issue(
        self,
        conn: Connection | None,
        task_id: int,
        attempt: int,
        *,
        run_id: str,
        project_id: int,
        expires_at: datetime,
    ) -> str:
        """A new token for this attempt, in ``conn``'s transaction (None: its own). The
        only time the token exists in clear: the caller hands it to the agent."""
        if conn is None:
            with self.tx.begin() as own:
                return self.issue(own, task_id, attempt, run_id=run_id, project_id=project_id,
                                  expires_at=expires_at)  # fmt: skip
        made = new_task_token()
        tasks.insert_token(
            conn, id=made.id, secret_hash=sha256_hex(made.secret), task_id=task_id,
            attempt=attempt, run_id=run_id, project_id=project_id, created_at=self.clock(),
            expires_at=expires_at, revoked_at=None,
        )  # fmt: skip
        return made.token

    def revoke(
        self, conn: Connection, task_id: int, now: datetime, *, attempt: int | None = None
    ) -> None:
        """Revoke the task's tokens (one attempt's, or all) in ``conn``'s transaction."""
        tasks.revoke_tokens(conn, task_id, now, attempt=attempt)

    def principal(self, token: str) -> Principal:
        """The principal of a standing token; Unauthenticated (401) for any other, with one
        message whatever the reason, so a guess learns nothing."""
        parsed = parse_task_token(token)
        if parsed is None:
            raise unauthenticated(REFUSED)
        with self.engine.connect() as conn:
            grant = tasks.token_grant(conn, parsed.id)
            submitter = None
            if grant is not None and grant.submitted_by is not None:
                submitter = accounts.get(conn, grant.submitted_by)
        now = self.clock()
        if (
            grant is None
            # Compared whatever else holds: the time taken says nothing about the rest.
            or not tokens_equal(sha256_hex(parsed.secret), grant.secret_hash)
            or grant.revoked_at is not None
            or now >= grant.expires_at
            or grant.current_attempt != grant.attempt  # a later attempt was leased
            or grant.attempt_state not in _LIVE
            or grant.task_run_id != grant.run_id
            or submitter is None
            or not submitter.is_active
        ):
            raise unauthenticated(REFUSED)
        return Principal(
            user_id=submitter.id,
            username=f"task:{grant.task_id}",
            role=Role.MEMBER,
            credential=CredentialKind.TASK,
            scope=Scope.WRITE,
            project_id=grant.project_id,
            task_id=grant.task_id,
            attempt=grant.attempt,
            run_id=grant.run_id,
        )


class TaskTokenProvider:
    """The identity chain's provider for ``Authorization: Bearer sb_task_...``. Nothing is
    remembered: a revocation holds from the next request."""

    def __init__(self, tokens: TaskTokens) -> None:
        self.tokens = tokens

    def remembered(self, presented: Presented) -> Principal | None:  # noqa: ARG002
        return None

    def identify(self, presented: Presented) -> Principal | None:
        token = presented.bearer
        if token is None or not token.startswith(TOKEN_PREFIX):
            return None
        return self.tokens.principal(token)
