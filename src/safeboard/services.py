"""The composition root: every service of a server, built once, in one order, by
``build_services(settings, engine)``.

The app (``api/app.py: create_app``) and the bootstrap of each start
(``server/bootstrap.py``) take their services from here (its users and keys from
``account_services.build_accounts``, which the CLI's local commands call alone); routes
receive theirs by type (``safeboard.provision.provided``), tests read them from the app's
one object (``services_of(app).runs``). The domain packages sit below this module and
never import it (import-linter).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from starlette.applications import Starlette

from safeboard.account_services import build_accounts
from safeboard.accounts.api_keys import ApiKeyProvider, ApiKeyService
from safeboard.accounts.context import AuthContext
from safeboard.accounts.ratelimit import LoginThrottle, throttle_keys
from safeboard.accounts.sessions import AuthService, SessionCookieProvider
from safeboard.accounts.users import UserService
from safeboard.agents.service import AgentProvider, AgentService
from safeboard.artifacts.service import ArtifactService
from safeboard.artifacts.store import LocalStore
from safeboard.artifacts.tbfiles import RunEventFiles
from safeboard.auth.dependencies import CookiePolicy, RequestAuth
from safeboard.auth.identity import IdentityChain
from safeboard.events import EventBus
from safeboard.jobs.code import CodeArchives
from safeboard.jobs.lifecycle import RunNotices
from safeboard.jobs.logs import TaskLogs
from safeboard.jobs.queue import TaskQueue
from safeboard.jobs.reaper import Reaper
from safeboard.jobs.service import TaskService
from safeboard.jobs.task_secrets import SecretBox, TaskSecrets
from safeboard.jobs.tokens import TaskTokenProvider, TaskTokens
from safeboard.jobs.wakeup import Wakeup
from safeboard.jobs.work import agents_work
from safeboard.metrics.service import MetricService
from safeboard.metrics.steps import StepService
from safeboard.projects.service import ProjectService
from safeboard.provision import NotProvided, provider_of
from safeboard.runs import repository as run_queries
from safeboard.runs.access import run_project, still_allowed
from safeboard.runs.service import RunService
from safeboard.runs.streams import StreamGuard
from safeboard.settings import Settings
from safeboard.storage import writer
from safeboard.tensorboards.service import TensorboardService
from safeboard.trash.service import TrashService

__all__ = ["Services", "build_services", "services_of"]

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """One instance of each service, one field per type: ``provided(T)`` finds the field
    whose declared type is ``T`` (no two fields share a type)."""

    settings: Settings
    engine: sa.Engine
    auth: AuthService  # sign-in, sessions, invitations, startup links
    keys: ApiKeyService
    # The identity chain (bearer keys, then the session cookie) and the cookie policy:
    # what the auth mechanism's request dependencies use, and the accounts routes' view.
    request_auth: RequestAuth
    auth_context: AuthContext
    users: UserService
    projects: ProjectService
    events: EventBus  # change notices; on PostgreSQL also other replicas'
    runs: RunService
    streams: StreamGuard  # open event streams: caps and credential re-checks
    metrics: MetricService
    steps: StepService  # histograms and text per step (issue 17)
    artifacts: ArtifactService
    agents: AgentService  # join tokens, enrollment, agents' credentials and inventory
    # Queued jobs (safeboard.jobs): users' tasks, the agents' queue, its wake-ups (on
    # PostgreSQL a LISTEN thread, started with the app) and the reaper of lapsed leases.
    tasks: TaskService
    queue: TaskQueue
    task_tokens: TaskTokens  # issued by the queue's leases; the identity chain's provider
    task_secrets: TaskSecrets  # sealed at submit, opened for the lease; re-sealed at start
    task_wakeup: Wakeup
    reaper: Reaper
    code: CodeArchives  # tasks' code archives, in the artifacts' blob store
    # Tasks' output as agents ship it; followers woken (PostgreSQL: a LISTEN thread).
    task_logs: TaskLogs
    # TensorBoard children and the entry into their origin (a second listener that
    # safeboard/server/run.py opens when the extra is installed).
    tensorboards: TensorboardService
    trash: TrashService  # deleted runs: the trash, purges, the retention sweep

    def provides(self, kind: type[Any]) -> bool:
        return kind in _field_of_type()

    def get(self, kind: type[T]) -> T:
        name = _field_of_type().get(kind)
        if name is None:
            raise NotProvided(f"Services holds no {kind.__qualname__}")
        found: T = getattr(self, name)
        return found


@cache
def _field_of_type() -> dict[type[Any], str]:
    hints = typing.get_type_hints(Services)
    by_type: dict[type[Any], str] = {}
    for field in dataclasses.fields(Services):
        kind = hints[field.name]
        if kind in by_type:
            raise TypeError(f"Services: {field.name} and {by_type[kind]} share a type")
        by_type[kind] = field.name
    return by_type


def _enroll_keys(token_id: str, address: str) -> list[str]:
    """Throttle keys of an enrollment: the join token and the client's address (grouped
    as sign-ins are), counted apart from sign-ins."""
    return [f"join:{key}" for key in throttle_keys(token_id, address)]


def build_services(
    settings: Settings, engine: sa.Engine, *, trust_anchor: bytes | None = None
) -> Services:
    """Every service on ``engine``, configured by ``settings``. No I/O but the artifact
    store's directory (made if missing); background work starts with the app
    (``EventBus.start``, the expiry sweeps). ``trust_anchor``: the certificate (DER) that
    clients of this server pin, whose key a join string carries (agents)."""
    # Where a lower domain needs a higher one, the higher one is passed in here (or in
    # account_services: binding a key to a project asks projects): a project's activity
    # counts runs; metrics ask runs who may act on a run (docs/architecture.md, "Domains").
    accounts = build_accounts(settings, engine)
    auth = AuthService(engine, settings, accounts.hasher)
    keys = accounts.keys

    # A revoked agent's live attempts end lost and their tasks are requeued, in the
    # revoking transaction (the queue, a higher domain, is built below).
    def end_agent_attempts(conn: sa.Connection, agent_id: str, now: datetime) -> Callable[[], None]:
        return queue.end_agent_attempts(conn, agent_id, now)

    # Failed agent enrollments are throttled like failed sign-ins (accounts' throttle).
    agents = AgentService(
        engine,
        throttle=LoginThrottle(settings.auth),
        throttle_keys=_enroll_keys,
        trust_anchor=trust_anchor,
        on_revoked=end_agent_attempts,
        work=agents_work,  # what each agent runs now (the Agents page)
    )
    # A task's token, bound to one attempt of one task and its run (S14).
    task_tokens = TaskTokens(engine)
    # Agent credentials and task tokens first: sb_agent_... and sb_task_... also start
    # like an API key (sb_...).
    identity = IdentityChain(
        [
            AgentProvider(agents),
            TaskTokenProvider(task_tokens),
            ApiKeyProvider(keys),
            SessionCookieProvider(auth),
        ]
    )
    # __Host- and Secure whenever browsers reach us over HTTPS (our TLS or a proxy's).
    cookie = CookiePolicy(
        secure=settings.tls_on or bool(settings.server.behind_proxy),
        max_age=settings.auth.session_max_days * 86400,
    )
    # Live updates are recorded (live_events) so that streams can catch up on reconnect.
    events = EventBus(engine, writes=writer(engine))
    # A task's run changes status as the task moves (queued, running, finished...).
    notices = RunNotices(events)
    wakeup = Wakeup(engine, poll_seconds=settings.jobs.poll_seconds)
    # Tasks' secrets, sealed under a key of secrets.toml (earlier keys still open them).
    secure = settings.secure
    task_secrets = TaskSecrets(engine, SecretBox(
        secure.task_secrets_key.get_secret_value(),
        secure.task_secrets_previous_keys.get_secret_value().split(),
    ))  # fmt: skip
    queue = TaskQueue(engine, settings.jobs, wakeup, notices=notices, tokens=task_tokens,
                      secrets=task_secrets)  # fmt: skip
    # One blob store: artifacts' files and tasks' code archives (server-made keys).
    store = LocalStore(settings.artifact_dir)
    tasks = TaskService(engine, wakeup, notices=notices, secrets=task_secrets)
    return Services(
        settings=settings,
        engine=engine,
        auth=auth,
        keys=keys,
        request_auth=RequestAuth(identity=identity, auth=auth, cookie=cookie),
        auth_context=AuthContext(identity=identity, auth=auth, keys=keys, cookie=cookie),
        users=accounts.users,
        projects=ProjectService(engine, settings=settings.projects, activity=run_queries.activity),
        events=events,
        runs=RunService(engine, events),
        # A per-account cap on open event streams, and a re-check that ends a stream
        # within a second of its credential or grant ending (runs/streams.py).
        streams=StreamGuard(
            engine,
            per_user=settings.server.event_streams_per_user,
            recheck_seconds=settings.server.event_stream_recheck_seconds,
            session_idle=timedelta(minutes=settings.auth.session_idle_minutes),
        ),
        metrics=MetricService(engine, events, runs=run_project, recheck=still_allowed),
        steps=StepService(engine, runs=run_project, events=events),
        artifacts=ArtifactService(
            engine,
            store,
            settings.artifacts,
            settings.secure.signing_key.get_secret_value().encode(),
        ),
        agents=agents,
        tasks=tasks,
        queue=queue,
        task_tokens=task_tokens,
        task_secrets=task_secrets,
        task_wakeup=wakeup,
        reaper=Reaper(queue, every=settings.jobs.reaper_seconds),
        code=CodeArchives(engine, store, settings.jobs),
        task_logs=TaskLogs(engine, settings.jobs, tasks),
        tensorboards=TensorboardService(engine, settings, RunEventFiles(engine, store)),
        trash=TrashService(engine, store, settings.retention, tasks, events=events),
    )


def services_of(app: Starlette) -> Services:
    """The services ``create_app`` built for ``app`` (the ones its routes use)."""
    services = provider_of(app)
    if not isinstance(services, Services):
        raise NotProvided(f"this app holds {type(services).__qualname__}, not Services")
    return services
