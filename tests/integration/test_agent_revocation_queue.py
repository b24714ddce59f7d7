"""Revoking an agent gives up its work at once, on SQLite and PostgreSQL: its live
attempts end ``lost`` in the revoking transaction (not when their leases lapse), their
tasks are requeued for another agent under the retry policy, their task tokens die, and
a lease that the revoked agent's long-poll was waiting for is refused (docs/agents.md,
"Failure behaviour")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from safeboard.agents.credentials import parse_join_secret
from safeboard.errors import AgentRevoked, Conflict
from safeboard.jobs.queue import AgentEvent
from safeboard.settings import Settings
from safeboard.vocabulary import TaskState
from tests.integration.queue_world import QueueWorld, build_queue_world


@pytest.fixture
def world(make_settings: Callable[..., Settings], db_url: str) -> Iterator[QueueWorld]:
    built = build_queue_world(make_settings, db_url)
    yield built
    built.close()


def enrolled(world: QueueWorld, hostname: str) -> str:
    """A real agent (a row in ``agents``), as ``safeboard agent join`` makes one."""
    made = world.services.agents.create_join_token(
        world.owner, pool="gpu", labels=[], ttl=None, url="http://127.0.0.1:8000"
    )
    parsed = parse_join_secret(made.join_string)
    assert parsed is not None
    agent, _ = world.services.agents.enroll(
        f"{parsed.id}.{parsed.secret}", hostname=hostname, version="0", labels=[],
        address="127.0.0.1",
    )  # fmt: skip
    return agent.id


def test_a_revocation_requeues_the_agents_running_tasks_at_once(world: QueueWorld) -> None:
    gone, other = enrolled(world, "gone"), enrolled(world, "other")
    running = world.submit("train").task.id
    stopping = world.submit("train").task.id
    first = world.queue.lease(gone, [], [])
    second = world.queue.lease(gone, [], [])
    assert first is not None
    assert second is not None
    world.queue.report(running, 1, gone, AgentEvent("running", pid=10))
    world.queue.report(stopping, 1, gone, AgentEvent("running", pid=11))
    world.tasks.cancel(world.owner, stopping)
    tokens = world.services.task_tokens

    world.services.agents.revoke(world.owner, gone)  # no clock moved: not the reaper

    requeued = world.tasks.get(world.owner, running)
    assert requeued.task.state == TaskState.QUEUED
    assert [(a.attempt, a.state, a.reason) for a in requeued.attempts] == [
        (1, TaskState.LOST.value, "its agent was revoked by an admin")
    ]
    assert world.tasks.get(world.owner, stopping).task.state == TaskState.CANCELLED
    for lease in (first, second):
        with pytest.raises(Exception, match="invalid task token"):
            tokens.principal(lease.task_token)
    with pytest.raises(Conflict):  # were its credential still good: stale
        world.queue.heartbeat(running, 1, gone)
    taken = world.queue.lease(other, [], [])
    assert taken is not None
    assert (taken.task_id, taken.attempt) == (running, 2)


def test_a_revoked_agents_waiting_lease_is_refused(world: QueueWorld) -> None:
    gone, other = enrolled(world, "gone"), enrolled(world, "other")
    outcome: list[object] = []

    def wait_for_work() -> None:
        try:
            outcome.append(world.queue.lease(gone, [], [], wait_seconds=10))
        except AgentRevoked as refused:
            outcome.append(refused)

    waiting = threading.Thread(target=wait_for_work)
    waiting.start()
    world.services.agents.revoke(world.owner, gone)
    task_id = world.submit("train").task.id  # wakes the long-poll
    waiting.join(timeout=15)
    assert not waiting.is_alive()
    assert [type(found) for found in outcome] == [AgentRevoked], outcome
    assert world.tasks.get(world.owner, task_id).task.state == TaskState.QUEUED
    with pytest.raises(AgentRevoked):
        world.queue.lease(gone, [], [])
    taken = world.queue.lease(other, [], [])
    assert taken is not None
    assert taken.task_id == task_id
