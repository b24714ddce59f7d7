"""Task logs (safeboard.jobs: logs.py, the agent's and the users' routes) on a real SQLite
file and a real PostgreSQL: batches stored once whatever the retries, fenced like
heartbeats, capped per task, read page by page, followed by a long-poll that a batch
stored on another replica wakes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from safeboard.agents.credentials import parse_agent_credential
from safeboard.auth.permissions import Role
from safeboard.cli.local import Local
from safeboard.errors import Conflict, InvalidRequest, NotFound
from safeboard.jobs.logs import TaskLogs
from safeboard.jobs.queue import AgentEvent
from safeboard.jobs.spec import TaskSpec
from safeboard.services import build_services
from safeboard.settings import Settings
from safeboard.storage import create_engine
from safeboard.vocabulary import MAX_LOG_BATCH_BYTES, MAX_LOG_LINE_BYTES
from tests.integration.identity_world import World, build_world
from tests.integration.queue_world import QueueWorld, build_queue_world


@pytest.fixture
def world(make_settings: Callable[..., Settings], db_url: str) -> Iterator[QueueWorld]:
    built = build_queue_world(make_settings, db_url, max_log_bytes=4096)
    yield built
    built.close()


def lines(*texts: str, stream: str = "stdout") -> list[tuple[str, str]]:
    return [(stream, text) for text in texts]


def leased(world: QueueWorld, agent: str = "a1") -> tuple[int, int]:
    task_id = world.submit("echo").task.id
    lease = world.queue.lease(agent, [], [])
    assert lease is not None
    assert lease.task_id == task_id
    return task_id, lease.attempt


def logs(world: QueueWorld) -> TaskLogs:
    return world.services.task_logs


def test_batches_numbered_read_in_order_and_stored_once(world: QueueWorld) -> None:
    task_id, attempt = leased(world)
    first = logs(world).append(task_id, attempt, "a1", 1, lines("one", "two"))
    assert (first.first_line, first.lines, first.dropped) == (1, 2, 0)
    # A retry of batch 1 (its answer was lost), even with other content: the first stands.
    again = logs(world).append(task_id, attempt, "a1", 1, lines("other"))
    assert again == first
    mixed = [("stderr", "oops"), ("stdout", ""), ("stdout", "é\r✓")]
    second = logs(world).append(task_id, attempt, "a1", 2, mixed)
    assert second.first_line == 3
    page = logs(world).page(world.owner, task_id)
    assert [(x.number, x.stream, x.text) for x in page.lines] == [
        (1, "stdout", "one"), (2, "stdout", "two"), (3, "stderr", "oops"), (4, "stdout", ""),
        (5, "stdout", "é\r✓"),
    ]  # fmt: skip
    assert (page.attempt, page.current_attempt, page.next, page.truncated) == (1, 1, 2, False)
    assert not page.attempt_ended
    # The cursor: nothing after batch 2; one batch at a time with limit=1.
    assert logs(world).page(world.owner, task_id, after=2).lines == []
    one = logs(world).page(world.owner, task_id, limit=1)
    assert [x.text for x in one.lines] == ["one", "two"]
    assert one.next == 1
    # A gap (batch 4 before 3) would lose lines: refused.
    with pytest.raises(Conflict, match="the next one is 3"):
        logs(world).append(task_id, attempt, "a1", 4, lines("x"))


def test_fenced_like_heartbeats(world: QueueWorld) -> None:
    task_id, attempt = leased(world)
    with pytest.raises(NotFound):  # another agent's attempt
        logs(world).append(task_id, attempt, "a2", 1, lines("x"))
    with pytest.raises(NotFound):
        logs(world).append(task_id, attempt + 1, "a1", 1, lines("x"))
    # The lease lapses: the attempt is lost, its late batches refused (409).
    world.clock.advance(world.services.settings.jobs.lease_seconds + 5)
    assert world.queue.reap() == 1
    with pytest.raises(Conflict, match="lease lapsed"):
        logs(world).append(task_id, attempt, "a1", 1, lines("late"))
    lease = world.queue.lease("a2", [], [])
    assert lease is not None
    assert lease.attempt == 2
    logs(world).append(task_id, 2, "a2", 1, lines("second attempt"))
    page = logs(world).page(world.owner, task_id)
    assert (page.attempt, [x.text for x in page.lines]) == (2, ["second attempt"])
    old = logs(world).page(world.owner, task_id, attempt=1)
    assert (old.lines, old.attempt_ended, old.current_attempt) == ([], True, 2)
    with pytest.raises(NotFound):
        logs(world).page(world.owner, task_id, attempt=3)


def test_an_exited_attempt_may_flush_its_tail(world: QueueWorld) -> None:
    task_id, attempt = leased(world)
    world.queue.report(task_id, attempt, "a1", AgentEvent("exited", exit_code=0))
    logs(world).append(task_id, attempt, "a1", 1, lines("the last words"))
    page = logs(world).page(world.owner, task_id)
    assert [x.text for x in page.lines] == ["the last words"]
    assert page.attempt_ended
    assert page.state == "succeeded"


def test_the_per_task_cap_keeps_the_first_part(world: QueueWorld) -> None:
    task_id, attempt = leased(world)  # the world's cap: 4096 bytes
    stored = logs(world).append(task_id, attempt, "a1", 1, lines(*["x" * 1000] * 3))
    assert (stored.lines, stored.dropped) == (3, 0)
    over = logs(world).append(task_id, attempt, "a1", 2, lines("y" * 1000, "z" * 96, "w"))
    assert (over.first_line, over.lines, over.dropped) == (4, 2, 1)
    past = logs(world).append(task_id, attempt, "a1", 3, lines("more", "and more"))
    assert (past.first_line, past.lines, past.dropped) == (7, 0, 2)
    page = logs(world).page(world.owner, task_id)
    assert [x.number for x in page.lines] == [1, 2, 3, 4, 5]
    assert page.truncated


def test_bounds_of_a_batch(world: QueueWorld) -> None:
    task_id, attempt = leased(world)
    with pytest.raises(InvalidRequest):
        logs(world).append(task_id, attempt, "a1", 1, lines("a\nb"))
    with pytest.raises(InvalidRequest):
        logs(world).append(task_id, attempt, "a1", 1, [("stdin", "x")])
    with pytest.raises(InvalidRequest):
        logs(world).append(task_id, attempt, "a1", 1, lines("x" * (MAX_LOG_BATCH_BYTES + 1)))


def test_reading_needs_the_project(world: QueueWorld) -> None:
    task_id, attempt = leased(world)
    logs(world).append(task_id, attempt, "a1", 1, lines("secret sauce"))
    world.services.users.add("eve", role=Role.MEMBER, actor="test")
    eve = Local(world.services).principal("eve")
    with pytest.raises(NotFound):
        logs(world).page(eve, task_id)


def test_a_follower_wakes_when_a_batch_is_stored(world: QueueWorld) -> None:
    task_id, attempt = leased(world)

    async def main() -> float:
        started = time.monotonic()
        waiting = asyncio.create_task(logs(world).follow(world.owner, task_id, wait=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(logs(world).append, task_id, attempt, "a1", 1, lines("hi"))
        page = await waiting
        assert [x.text for x in page.lines] == ["hi"]
        return time.monotonic() - started

    assert asyncio.run(main()) < 5.0
    # The task ended: a follow answers at once, with nothing.
    world.queue.report(task_id, attempt, "a1", AgentEvent("exited", exit_code=3))
    started = time.monotonic()
    page = asyncio.run(logs(world).follow(world.owner, task_id, after=1, wait=10))
    assert (page.lines, page.state) == ([], "failed")
    assert time.monotonic() - started < 5.0


def test_a_stop_answers_the_followers_at_once(world: QueueWorld) -> None:
    """A graceful stop (server/run.py) releases the long-polls: the stop need not wait."""
    task_id, _ = leased(world)
    # Its 1 s look would answer a follower that the release forgot: only the 20 s wait.
    logs(world).wakeup.poll_seconds = 30

    async def main() -> float:
        waiting = asyncio.create_task(logs(world).follow(world.owner, task_id, wait=20))
        await asyncio.sleep(0.3)
        released = time.monotonic()
        logs(world).release()
        page = await waiting
        assert page.lines == []
        return time.monotonic() - released

    assert asyncio.run(main()) < 5.0  # not the 20 s wait


@pytest.mark.postgres
def test_a_batch_on_one_replica_wakes_a_follower_on_another(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    one = build_queue_world(make_settings, pg_url)
    engine = create_engine(pg_url)
    replica = build_services(one.services.settings, engine)
    # Its 1 s look would find the lines without the notice: only the 20 s wait.
    replica.task_logs.wakeup.poll_seconds = 30
    replica.task_logs.start()
    try:
        task_id, attempt = leased(one)
        got: list[float] = []

        def follow() -> None:
            page = asyncio.run(replica.task_logs.follow(one.owner, task_id, wait=20))
            got.append(time.monotonic() if page.lines else -1.0)

        follower = threading.Thread(target=follow)
        follower.start()
        time.sleep(1.5)  # the follower waits, the listener listens
        stored = time.monotonic()
        one.services.task_logs.append(task_id, attempt, "a1", 1, lines("across"))
        follower.join(timeout=20)
        assert got
        assert got[0] > 0
        assert got[0] - stored < 5.0  # noticed: not the 20 s wait
    finally:
        replica.task_logs.stop()
        engine.dispose()
        one.close()


# Through HTTP: the agent's route and the users' route


@pytest.fixture
async def http_world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.services.projects.create(Local(built.services).principal("admin"), "p")
    yield built
    await built.close()


@pytest.mark.anyio
async def test_the_routes(http_world: World) -> None:
    world = http_world
    credential = world.agent()
    assert parse_agent_credential(credential) is not None
    agent = world.client(Authorization=f"Bearer {credential}")
    owner = Local(world.services).principal("admin")
    task_id = world.services.tasks.submit(owner, "p", TaskSpec(["echo"])).task.id
    leased = await agent.post("/api/v1/agent/lease", json={"free_gpus": []})
    assert leased.status_code == 200
    url = f"/api/v1/agent/tasks/{task_id}/1/logs"
    batch = {"seq": 1, "lines": [{"stream": "stdout", "text": "hello"},
                                 {"stream": "stderr", "text": "world"}]}  # fmt: skip
    for _ in range(2):  # a retry: the same answer, stored once
        shipped = await agent.post(url, json=batch)
        assert shipped.status_code == 200, shipped.text
        assert shipped.json() == {"seq": 1, "first_line": 1, "lines": 2, "dropped": 0,
                                  "truncated": False}  # fmt: skip
    too_many = {"seq": 2, "lines": [{"stream": "stdout", "text": "x"}] * 1001}
    assert (await agent.post(url, json=too_many)).status_code == 422
    too_long = {"seq": 2, "lines": [{"stream": "stdout", "text": "x" * (MAX_LOG_LINE_BYTES + 101)}]}
    assert (await agent.post(url, json=too_long)).status_code == 422
    big = {"seq": 2, "lines": [{"stream": "stdout", "text": "é" * (MAX_LOG_LINE_BYTES // 2)}] * 70}
    assert (await agent.post(url, json=big)).status_code == 422  # over 1 MiB of text
    assert (await agent.post(url, json={"seq": 2, "lines": []})).status_code == 422
    nul = {"seq": 2, "lines": [{"stream": "stdout", "text": "a\u0000b"}]}
    assert (await agent.post(url, json=nul)).status_code in (400, 422)

    user = world.client(Authorization=f"Bearer {world.key('admin')}")
    read = await user.get(f"/api/v1/tasks/{task_id}/logs")
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["lines"] == [{"n": 1, "stream": "stdout", "text": "hello"},
                             {"n": 2, "stream": "stderr", "text": "world"}]  # fmt: skip
    assert (body["attempt"], body["next"], body["state"]) == (1, 1, "leased")
    waited = await user.get(f"/api/v1/tasks/{task_id}/logs", params={"after": 1, "wait": 0.5})
    assert waited.status_code == 200
    assert waited.json()["lines"] == []
    # A user cannot ship; an agent cannot read.
    assert (await user.post(url, json=batch)).status_code == 403
    assert (await agent.get(f"/api/v1/tasks/{task_id}/logs")).status_code in (401, 403)
    assert (await user.get("/api/v1/tasks/999/logs")).status_code == 404
    mistyped = await user.get(f"/api/v1/tasks/{task_id}/logs", params={"aftr": 1})
    assert mistyped.status_code == 422
    gap = {"seq": 3, "lines": [{"stream": "stdout", "text": "x"}]}
    assert (await agent.post(url, json=gap)).status_code == 409  # batch 2 is missing
    # The task's own token reads its own task's output (what its process printed), and
    # no other task's.
    token = world.client(Authorization=f"Bearer {leased.json()['task_token']}")
    own = await token.get(f"/api/v1/tasks/{task_id}/logs")
    assert own.status_code == 200, own.text
    assert len(own.json()["lines"]) == 2
    other = world.services.tasks.submit(owner, "p", TaskSpec(["echo"])).task.id
    assert (await token.get(f"/api/v1/tasks/{other}/logs")).status_code == 404
