"""A small world for queue tests: the real services on a real database (SQLite file or
PostgreSQL), a project with an owner, a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from safeboard.auth.permissions import Role
from safeboard.auth.principal import Principal
from safeboard.cli.local import Local
from safeboard.jobs.queue import TaskQueue
from safeboard.jobs.service import TaskDetail, TaskService
from safeboard.jobs.spec import TaskSpec
from safeboard.services import Services, build_services
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.support.agents import QUEUE_TEST_AGENTS, add_agents
from tests.support.hashing import FAST_ARGON2
from tests.support.schema import migrate


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 12, 5, 8, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class QueueWorld:
    services: Services
    owner: Principal
    clock: Clock

    @property
    def queue(self) -> TaskQueue:
        return self.services.queue

    @property
    def tasks(self) -> TaskService:
        return self.services.tasks

    def submit(self, *command: str, project: str = "p", **spec: Any) -> TaskDetail:
        return self.tasks.submit(self.owner, project, TaskSpec(list(command or ["true"]), **spec))

    def close(self) -> None:
        self.services.reaper.stop()
        self.services.task_wakeup.stop()
        self.services.metrics.rollups.stop()
        self.services.engine.dispose()


def build_queue_world(
    make_settings: Callable[..., Settings], db_url: str, **jobs: Any
) -> QueueWorld:
    settings = make_settings(database={"url": db_url}, auth=FAST_ARGON2, jobs=jobs)
    engine = create_engine(settings.database_url)
    migrate(engine)
    services = build_services(settings, engine)
    clock = Clock()
    services.queue.clock = clock
    services.tasks.clock = clock
    services.users.add("olga", role=Role.ADMIN, actor="test")
    owner = Local(services).principal("olga")
    services.projects.create(owner, "p")
    add_agents(engine, *QUEUE_TEST_AGENTS)  # the made-up agents the tests lease with
    return QueueWorld(services, owner, clock)
