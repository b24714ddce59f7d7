"""What open event streams cost the database: N live streams, each of a different account
and API key (the worst case: nothing shared), held open while nothing else happens; every
SQL statement the server runs meanwhile is counted (runs/streams.py re-checks them all).

    python bench/streams.py                        # 500 streams, SQLite, 10 s
    python bench/streams.py --streams 100 --seconds 5
    python bench/streams.py --database-url postgresql+psycopg://user:pw@host/db  # empty db

In process (the real app, its real engine, streams read over ASGI as a server would): no
sockets, so it measures the re-check, not the network. Also times one revocation: how
long until the revoked key's stream has ended. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from safeboard.api.app import create_app
from safeboard.auth.permissions import CredentialKind, ProjectRole, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.projects import repository as projects
from safeboard.secret_store import ensure_secrets
from safeboard.services import services_of
from safeboard.settings import load_settings
from safeboard.storage import create_engine, upgrade


class Stream:
    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token
        self.body = ""
        self.ended: float | None = None
        self.gone = asyncio.Event()
        self.changed = asyncio.Event()
        self.sent = False

    async def receive(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.body += message.get("body", b"").decode()
            if not message.get("more_body", False):
                self.ended = time.monotonic()
        self.changed.set()

    def start(self, host: str) -> asyncio.Task[None]:
        path = "/api/v1/projects/bench/events"
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", host.encode()),
                        (b"authorization", f"Bearer {self.token}".encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        return asyncio.get_running_loop().create_task(self.app(scope, self.receive, self.send))

    async def until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


def _seed(n: int, database_url: str | None) -> tuple[Any, Any, str, Principal, list[str]]:
    """An app on a fresh database; a project with ``n`` viewers, each with a read key."""
    directory = ensure_data_dir(Path(tempfile.mkdtemp()) / "data")
    ensure_secrets(directory)
    overrides: dict[str, Any] = {"database": {"url": database_url}} if database_url else {}
    settings = load_settings(directory, **overrides)
    engine = create_engine(settings.database_url)
    upgrade(engine)
    app = create_app(settings, engine=engine)
    services = services_of(app)
    users, keys = services.users, services.keys
    print(f"seeding {n} accounts, keys and grants ({engine.dialect.name})...", file=sys.stderr)
    made = users.add("owner", role=Role.ADMIN, actor="bench")
    owner = Principal(made.id, "owner", Role.ADMIN, CredentialKind.SESSION, Scope.ADMIN)
    project = services.projects.create(owner, "bench")
    tokens = []
    for i in range(n):
        user = users.add(f"user{i}", role=Role.MEMBER, actor="bench")
        with engine.begin() as conn:
            projects.grant(conn, project.id, user.id, ProjectRole.VIEWER)
        who = Principal(user.id, user.username, Role.MEMBER, CredentialKind.SESSION, Scope.ADMIN)
        tokens.append(keys.create(who, name="bench", scope=Scope.READ)[1])
    return app, engine, f"127.0.0.1:{settings.port}", owner, tokens


async def measure(n: int, seconds: float, database_url: str | None) -> None:
    app, engine, host, owner, tokens = _seed(n, database_url)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    streams = [Stream(app, token) for token in tokens]
    tasks = [stream.start(host) for stream in streams]
    for stream in streams:
        await stream.until(lambda s=stream: ": connected" in s.body, 30)
    guard = services_of(app).streams
    print(f"{n} streams open; counting statements for {seconds} s...", file=sys.stderr)
    event.listen(engine, "before_cursor_execute", count)
    rounds0, queries0, began = guard.rounds, guard.queries, time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - began
    event.remove(engine, "before_cursor_execute", count)
    rounds, queries = guard.rounds - rounds0, guard.queries - queries0
    durations = []
    for _ in range(20):
        start = time.perf_counter()
        await asyncio.to_thread(guard.check)
        durations.append(time.perf_counter() - start)

    victim = streams[n // 2]
    revoked_at = time.monotonic()
    keys = services_of(app).keys
    await asyncio.to_thread(keys.revoke, owner, victim.token.split("_")[1])
    await victim.until(lambda: victim.ended is not None, 5)
    assert victim.ended is not None
    still_open = sum(1 for s in streams if s.ended is None)

    print(f"database            {engine.dialect.name}")
    print(f"open streams        {n} (as many accounts and keys)")
    print(f"recheck interval    {guard.recheck_seconds} s")
    print(f"rounds              {rounds} in {elapsed:.1f} s ({rounds / elapsed:.2f}/s)")
    print(f"guard statements    {queries} ({queries / elapsed:.1f}/s, all streams together)")
    print(f"all SQL statements  {statements} ({statements / elapsed:.1f}/s, per stream "
          f"{statements / elapsed / n:.3f}/s)")  # fmt: skip
    print(f"one round           median {statistics.median(durations) * 1000:.1f} ms, "
          f"max {max(durations) * 1000:.1f} ms")  # fmt: skip
    print(f"revoked -> ended    {(victim.ended - revoked_at) * 1000:.0f} ms "
          f"({still_open} of {n} others still open)")  # fmt: skip
    for stream in streams:
        stream.gone.set()
    await asyncio.gather(*tasks)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(measure(args.streams, args.seconds, args.database_url))


if __name__ == "__main__":
    main()
