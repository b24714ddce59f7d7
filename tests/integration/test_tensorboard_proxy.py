"""TensorBoard's origin (safeboard/tensorboards/proxy.py) in front of a recording upstream
(tests/support/echo_upstream.py, a real process on the instance's Unix socket): entry by
one-time ticket only, a cookie bound to user and instance, an allow-list of forwarded
headers (never Cookie, Authorization or X-Forwarded-*), GET/HEAD/POST only, same-origin
POSTs, bounded bodies, a slow upstream answered with 503; the cap per user and the idle
timeout; the admins' route that opens an instance, audited."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from safeboard.audit import service as audit_service
from safeboard.auth.permissions import Role, Scope
from safeboard.errors import RateLimited
from safeboard.settings import Settings
from safeboard.settings_tensorboard import TensorboardSettings
from safeboard.tensorboards.proxy import TensorboardOrigin
from safeboard.tensorboards.supervisor import Instance, Supervisor
from safeboard.tensorboards.tickets import Entry, Tickets, cookie_name
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

ECHO = (sys.executable, str(Path(__file__).parents[1] / "support" / "echo_upstream.py"))
ORIGIN = "https://tb.test:8444"


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    settings = TensorboardSettings(
        max_per_user=2, upstream_timeout_seconds=1.0, max_body_bytes=4096, start_timeout_seconds=30
    )
    board = Supervisor(tmp_path, settings, child=ECHO)
    yield board
    board.stop_all()


@pytest.fixture
async def origin(
    supervisor: Supervisor,
) -> AsyncIterator[tuple[TensorboardOrigin, httpx.AsyncClient]]:
    app = TensorboardOrigin(supervisor, Tickets(3600), secure=True)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield app, client


def logdir(tmp_path: Path, name: str = "logs") -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


async def enter(
    app: TensorboardOrigin, client: httpx.AsyncClient, instance: Instance, user: int = 1
) -> str:
    """The cookie value of a ticket redeemed for ``user`` (the client's jar keeps it)."""
    ticket = app.tickets.mint(Entry(user, f"user{user}", instance.id))
    answer = await client.post("/enter", content=ticket, headers={"Origin": ORIGIN})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"location": f"/tb/{instance.id}/"}
    set_cookie = answer.headers["set-cookie"]
    name = cookie_name(instance.id, secure=True)
    assert set_cookie.startswith(f"{name}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=3600"):
        assert attribute in set_cookie
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def seen(instance: Instance) -> list[dict[str, object]]:
    path = instance.directory / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_upstream_never_sees_credentials(
    origin: tuple[TensorboardOrigin, httpx.AsyncClient], supervisor: Supervisor, tmp_path: Path
) -> None:
    app, client = origin
    instance, started = supervisor.start(1, "user1", logdir(tmp_path))
    assert started
    assert (
        instance.directory.stat().st_mode & 0o777,
        instance.socket_path.stat().st_mode & 0o777,
    ) == (0o700, 0o600)
    value = await enter(app, client, instance)
    client.cookies.clear()  # sent below, with the main origin's cookie (same host)
    name = cookie_name(instance.id, secure=True)
    answer = await client.get(
        f"/tb/{instance.id}/data/runs?x=1",
        headers={
            "Authorization": "Bearer sb_secret",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.test",
            "Cookie": f"__Host-sbsession=main-origin-session; {name}={value}",
            "Accept-Language": "en",
        },
    )
    assert answer.status_code == 200, answer.text
    (request,) = seen(instance)
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert request["path"] == f"/tb/{instance.id}/data/runs"
    assert headers["accept-language"] == "en"
    assert headers["host"] == "tensorboard"
    leaked = [k for k in headers if k in ("cookie", "authorization") or k.startswith("x-forwarded")]
    assert not leaked, headers
    assert "set-cookie" not in answer.headers  # the upstream's cookie is dropped
    assert answer.headers["cache-control"] == "no-store"  # /data/
    assert "frame-ancestors 'none'" in answer.headers.get_list("content-security-policy")


async def test_refused_without_cookie_with_another_users_or_instances_and_used_ticket(
    origin: tuple[TensorboardOrigin, httpx.AsyncClient], supervisor: Supervisor, tmp_path: Path
) -> None:
    app, client = origin
    mine, _ = supervisor.start(1, "user1", logdir(tmp_path))
    theirs, _ = supervisor.start(2, "user2", logdir(tmp_path))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as stranger:
        assert (await stranger.get(f"/tb/{mine.id}/")).status_code == 404  # no cookie
    # user 2's cookie for their own instance opens neither mine under my name nor theirs
    # as mine; a cookie minted for user 2 on my instance is not the owner's either.
    value = await enter(app, client, theirs, user=2)
    for cookie in (
        {cookie_name(mine.id, secure=True): value},
        {cookie_name(mine.id, secure=True): app.tickets.cookie(Entry(2, "user2", mine.id))},
        {cookie_name(mine.id, secure=True): value[:-1] + ("0" if value[-1] != "0" else "1")},
    ):
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN, cookies=cookie) as other:
            assert (await other.get(f"/tb/{mine.id}/")).status_code == 404
    assert seen(mine) == []
    # A ticket works once; an unknown one never; a cross-site entry is refused.
    ticket = app.tickets.mint(Entry(1, "user1", mine.id))
    assert (
        await client.post("/enter", content=ticket, headers={"Origin": "https://evil.test"})
    ).status_code == 403
    assert (
        await client.post("/enter", content=ticket, headers={"Origin": ORIGIN})
    ).status_code == 200
    assert (
        await client.post("/enter", content=ticket, headers={"Origin": ORIGIN})
    ).status_code == 404
    assert (
        await client.post("/enter", content="forged", headers={"Origin": ORIGIN})
    ).status_code == 404
    # A ticket for another user's instance does not enter it (owner bound).
    wrong = app.tickets.mint(Entry(1, "user1", theirs.id))
    assert (
        await client.post("/enter", content=wrong, headers={"Origin": ORIGIN})
    ).status_code == 404
    # The entry page: its one script allowed by hash, nothing else.
    page = await client.get("/enter")
    assert page.status_code == 200
    csp = page.headers.get_list("content-security-policy")
    assert any("script-src 'sha256-" in policy and "default-src 'none'" in policy for policy in csp)


async def test_fonts_at_the_root_reach_only_an_instance_of_the_cookie(
    origin: tuple[TensorboardOrigin, httpx.AsyncClient], supervisor: Supervisor, tmp_path: Path
) -> None:
    """TensorBoard's page asks for ``/font-roboto/<name>.woff2`` at the origin's root: it
    goes to the instance whose cookie the request carries, as that instance's own path;
    without a valid cookie, or for any other name, the one 404."""
    app, client = origin
    mine, _ = supervisor.start(1, "user1", logdir(tmp_path))
    theirs, _ = supervisor.start(2, "user2", logdir(tmp_path))
    font = "/font-roboto/oMMgfZMQthOryQo9n22dcuvvDin1pK8aKteLpeZ5c0A.woff2"
    await enter(app, client, mine)
    answer = await client.get(font)
    assert answer.status_code == 200, answer.text
    assert [r["path"] for r in seen(mine)] == [f"/tb/{mine.id}{font}"]
    for other in ("/font-roboto/x.js", "/font-roboto/../tb/x.woff2", "/font-roboto/LICENSE"):
        assert (await client.get(other)).status_code == 404
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    forged = {cookie_name(theirs.id, secure=True): app.tickets.cookie(Entry(1, "user1", theirs.id))}
    for cookies in ({}, forged):
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN, cookies=cookies) as c:
            assert (await c.get(font)).status_code == 404
    assert seen(theirs) == []
    assert len(seen(mine)) == 1


async def test_methods_bodies_origins_and_slow_upstream(
    origin: tuple[TensorboardOrigin, httpx.AsyncClient], supervisor: Supervisor, tmp_path: Path
) -> None:
    app, client = origin
    instance, _ = supervisor.start(1, "user1", logdir(tmp_path))
    await enter(app, client, instance)
    base = f"/tb/{instance.id}"
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        assert (await client.request(method, f"{base}/x")).status_code == 405
    assert (await client.head(f"{base}/x")).status_code == 200
    same = {"Origin": ORIGIN}
    assert (await client.post(f"{base}/data", content=b"a" * 100, headers=same)).status_code == 200
    assert (await client.post(f"{base}/data", content=b"a" * 100)).status_code == 403
    cross = {"Origin": "https://evil.test"}
    assert (await client.post(f"{base}/data", content=b"a" * 100, headers=cross)).status_code == 403
    too_big = await client.post(f"{base}/data", content=b"a" * 5000, headers=same)
    assert too_big.status_code == 413
    slow = await client.get(f"{base}/slow")
    assert slow.status_code == 503
    assert slow.json()["error"]["code"] == "unavailable"
    assert [r["method"] for r in seen(instance)] == ["HEAD", "POST", "GET"]


async def test_cap_per_user_reuse_and_idle_timeout(supervisor: Supervisor, tmp_path: Path) -> None:
    first, started = supervisor.start(1, "user1", logdir(tmp_path, "a"))
    again, started_again = supervisor.start(1, "user1", logdir(tmp_path, "a"))
    assert started
    assert not started_again
    assert again is first
    supervisor.start(1, "user1", logdir(tmp_path, "b"))
    with pytest.raises(RateLimited):
        supervisor.start(1, "user1", logdir(tmp_path, "c"))
    other, _ = supervisor.start(2, "user2", logdir(tmp_path, "c"))  # a cap per user
    first.last_used -= supervisor.settings.idle_minutes * 60 + 1
    assert supervisor.reap() == [first]
    assert first.process.poll() is not None
    assert not first.directory.exists()
    assert supervisor.get(first.id) is None
    assert supervisor.get(other.id) is other


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("member")
    built.services.tensorboards.supervisor.child = ECHO
    built.services.tensorboards.listening(ORIGIN)
    yield built
    built.services.tensorboards.close()
    await built.close()


async def test_route_opens_for_admins_only_and_is_audited(world: World, tmp_path: Path) -> None:
    member = world.client(Authorization=f"Bearer {world.key('member', Scope.WRITE)}")
    refused = await member.post("/api/v1/tensorboards", json={"logdir": str(tmp_path)})
    assert refused.status_code == 403
    reader = world.client(Authorization=f"Bearer {world.key('admin', Scope.READ)}")
    assert (
        await reader.post("/api/v1/tensorboards", json={"logdir": str(tmp_path)})
    ).status_code == 403
    admin = world.client(Authorization=f"Bearer {world.key('admin')}")
    missing = await admin.post("/api/v1/tensorboards", json={"logdir": str(tmp_path / "nope")})
    assert missing.status_code == 422  # invalid_request
    opened = await admin.post("/api/v1/tensorboards", json={"logdir": str(tmp_path)})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["started"] is True
    assert body["link"].startswith(f"{ORIGIN}/enter#ticket=")
    reopened = (await admin.post("/api/v1/tensorboards", json={"logdir": str(tmp_path)})).json()
    assert (reopened["id"], reopened["started"]) == (body["id"], False)
    assert reopened["link"] != body["link"]  # a new ticket each time
    entries = audit_service.list_entries(world.services.engine, action="tensorboard.started")
    assert [(e.actor, e.target) for e in entries] == [("admin", body["id"])]


async def test_a_disabled_account_loses_its_instance(world: World, tmp_path: Path) -> None:
    world.user("carol", Role.ADMIN)
    services = world.services
    carol = services.users.get("carol")
    opened = services.tensorboards.open_logdir(carol.id, "carol", logdir(tmp_path))
    app = services.tensorboards.application(secure=True, recheck_seconds=0)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        ticket = opened.link.split("#ticket=", 1)[1]
        entered = await client.post("/enter", content=ticket, headers={"Origin": ORIGIN})
        assert entered.status_code == 200, entered.text
        board = entered.json()["location"]
        assert (await client.get(board)).status_code == 200
        services.users.set_active("carol", False, actor="test")
        assert (await client.get(board)).status_code == 404
        again = services.tensorboards.open_logdir(carol.id, "carol", logdir(tmp_path)).link
        ticket = again.split("#ticket=", 1)[1]
        refused = await client.post("/enter", content=ticket, headers={"Origin": ORIGIN})
        assert refused.status_code == 404


def test_an_idle_instance_stops_by_itself(tmp_path: Path) -> None:
    settings = TensorboardSettings(idle_minutes=0.02, start_timeout_seconds=30)  # 1.2 s
    board = Supervisor(tmp_path, settings, child=ECHO)
    try:
        instance, _ = board.start(1, "user1", logdir(tmp_path))
        deadline = time.monotonic() + 30
        while instance.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not instance.alive()  # nobody asked: the reaper thread stopped it
        assert board.instances() == []
    finally:
        board.stop_all()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_origin_is_named_as_the_server_is(
    make_settings: Callable[..., Settings], host: str
) -> None:
    from safeboard.server.bootstrap import advertised_url
    from safeboard.server.origins import open_tensorboard_listener
    from safeboard.server.run import bind_socket

    settings = make_settings(server={"host": host})
    board = open_tensorboard_listener(settings, bind_socket)
    assert board is not None
    try:
        expected = advertised_url(settings).rsplit(":", 1)[0]
        assert board.origin == f"{expected}:{board.port}"
        assert board.origin.startswith("https://" if host == "0.0.0.0" else "http://127.0.0.1:")
        assert "0.0.0.0" not in board.origin
    finally:
        board.sock.close()
