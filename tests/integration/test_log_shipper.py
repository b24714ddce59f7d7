"""The agent's side of task logs (agent/output.py, agent/shipper.py) against the real app
(in process) on a real database: real pipes read into the 0600 spool, lines cut, cleaned
and redacted; batches shipped and acknowledged; a batch whose answer was lost sent again
and stored once; a shipper started again on the same file resumes where the last one
was acknowledged, resending and skipping nothing."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from safeboard.agent.output import CUT_MARK, Spool
from safeboard.agent.redact import Redactor
from safeboard.agent.shipper import Shipper
from safeboard.agents.credentials import parse_agent_credential
from safeboard.auth.permissions import Role
from safeboard.cli.local import Local
from safeboard.client import ApiClient, Client
from safeboard.client.retry import NO_RETRY
from safeboard.jobs.spec import TaskSpec
from safeboard.settings import Settings
from safeboard.vocabulary import MAX_LOG_LINE_BYTES
from tests.integration.identity_world import World, build_world


class ThreadTransport(httpx.BaseTransport):
    """The synchronous client against the in-process app, from any thread (a shipper's):
    each request on an event loop of its own. ``lose`` answers: the request reaches the
    app, whose answer is then dropped (a connection cut after the server stored it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lose = 0
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.calls += 1

        async def send() -> tuple[int, httpx.Headers, bytes]:
            inner = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
            forwarded = httpx.Request(request.method, request.url, headers=request.headers,
                                      content=body)  # fmt: skip
            response = await inner.handle_async_request(forwarded)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = asyncio.run(send())
        if self.lose:
            self.lose -= 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(status, headers=headers, content=content)


@pytest.fixture
def world(make_settings: Callable[..., Settings], db_url: str) -> Iterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.services.projects.create(Local(built.services).principal("admin"), "p")
    yield built
    asyncio.run(built.close())


def leased_task(world: World) -> tuple[int, str]:
    credential = world.agent()
    parsed = parse_agent_credential(credential)
    assert parsed is not None
    owner = Local(world.services).principal("admin")
    task_id = world.services.tasks.submit(owner, "p", TaskSpec(["echo"])).task.id
    lease = world.services.queue.lease(parsed.id, [], [])
    assert lease is not None
    assert (lease.task_id, lease.attempt) == (task_id, 1)
    return task_id, credential


def shipper(world: World, spool: Spool, task_id: int, credential: str,
            transport: ThreadTransport, said: list[str] | None = None) -> Shipper:  # fmt: skip
    said = [] if said is None else said

    def connect() -> Client:
        api = ApiClient(world.base_url, credential, transport=transport)
        return Client(api, retry=NO_RETRY)

    made = Shipper(spool, task_id=task_id, attempt=1, connect=connect, say=said.append,
                   refused=lambda exc: said.append(exc.message), hard_stop=threading.Event(),
                   label=f"task {task_id} attempt 1")  # fmt: skip
    made.start()
    return made


def stored(world: World, task_id: int) -> list[tuple[int, str, str]]:
    owner = Local(world.services).principal("admin")
    page = world.services.task_logs.page(owner, task_id, limit=1000)
    return [(x.number, x.stream, x.text) for x in page.lines]


def test_pipes_to_spool_to_server(world: World, tmp_path: Path) -> None:
    task_id, credential = leased_task(world)
    spool = Spool(tmp_path / "logs" / f"task-{task_id}.1.log", Redactor(["hunter22"]))
    assert (spool.path.stat().st_mode & 0o777) == 0o600
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    with os.fdopen(out_read, "rb") as out_pipe, os.fdopen(err_read, "rb") as err_pipe:
        readers = [spool.reader("stdout", out_pipe), spool.reader("stderr", err_pipe)]
        os.write(out_write, b"one\ntw")
        os.write(out_write, b"o\r\npass: hun")  # the secret in two writes: one line
        os.write(out_write, b"ter22!\n\xff bad \x00 nul\n")
        os.write(out_write, "é".encode() * MAX_LOG_LINE_BYTES + b" tail hunter22\nafter\n")
        os.write(err_write, b"warning\nno newline at the end")
        os.close(out_write)
        os.close(err_write)
        for reader in readers:
            reader.join(10)
    transport = ThreadTransport(world.app)
    first = shipper(world, spool, task_id, credential, transport)
    assert first.finish(30)
    cut = "é" * (MAX_LOG_LINE_BYTES // 2) + CUT_MARK  # at a character's edge
    expected_out = ["one", "two", "pass: [redacted]!", "\ufffd bad \ufffd nul", cut, "after"]
    got = stored(world, task_id)
    assert [t for _, s, t in got if s == "stdout"] == expected_out
    assert [t for _, s, t in got if s == "stderr"] == ["warning", "no newline at the end"]
    assert [n for n, _, _ in got] == list(range(1, 9))
    assert "hunter22" not in spool.path.read_text()  # redacted before it is written
    assert first.seq == 1  # one batch: all came within a second

    # The answer to batch 2 is lost: sent again, stored once.
    spool.write("stdout", "lost answer")
    transport.lose = 1
    said: list[str] = []
    second = shipper(world, spool, task_id, credential, transport, said)
    assert second.finish(30)
    assert second.seq == 2
    assert any("cannot ship its output" in line for line in said)
    assert [t for _, _, t in stored(world, task_id)][-1] == "lost answer"
    assert len(stored(world, task_id)) == 9

    # Started again on the same file: resumes from the acknowledged position.
    calls = transport.calls
    again = shipper(world, spool, task_id, credential, transport)
    assert (again.seq, again.offset) == (2, spool.size)
    spool.write("stderr", "resumed")
    assert again.finish(30)
    assert transport.calls == calls + 1  # nothing resent
    got = stored(world, task_id)
    assert len(got) == 10
    assert got[-1] == (10, "stderr", "resumed")
    spool.close()


def test_a_line_that_redaction_lengthens_stays_within_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "task-1.1.log", Redactor(["abcd"]))
    spool.write("stdout", "abcd" * (MAX_LOG_LINE_BYTES // 4))  # 16 KiB: not cut as read
    spool.close()
    (line,) = spool.path.read_bytes().splitlines()
    assert line.startswith(b"o [redacted][redacted]")
    assert line.endswith(CUT_MARK.encode())
    assert len(line) == 2 + MAX_LOG_LINE_BYTES + len(CUT_MARK)
    assert b"abcd" not in line
