"""Sign-in, sessions, CSRF and throttling against the real app on SQLite and PostgreSQL
(S4, S5, S6, S7)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import pytest

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import PASSWORD, World, build_world
from tests.support.sessions import BINDING_HEADER, session_cookie_name

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


@pytest.fixture
async def tls_world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url, tls={"enabled": True})
    built.user("alice")
    yield built
    await built.close()


def _cookie(header: str) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar


# The startup link, S4.


async def test_startup_token_signs_in_once(world: World) -> None:
    admin = world.users.get("admin")
    token = world.context.auth.mint_startup_token(admin.id)
    first = await world.client().post("/api/v1/auth/startup", json={"token": token})
    assert first.status_code == 200
    assert first.json()["user"]["username"] == "admin"
    again = await world.client().post("/api/v1/auth/startup", json={"token": token})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "unauthenticated"


async def test_new_startup_token_kills_unused_ones(world: World) -> None:
    admin = world.users.get("admin")
    old = world.context.auth.mint_startup_token(admin.id)
    new = world.context.auth.mint_startup_token(admin.id)  # what a restart does
    assert (
        await world.client().post("/api/v1/auth/startup", json={"token": old})
    ).status_code == 401
    assert (
        await world.client().post("/api/v1/auth/startup", json={"token": new})
    ).status_code == 200


async def test_startup_token_expires_after_15_minutes(world: World) -> None:
    admin = world.users.get("admin")
    token = world.context.auth.mint_startup_token(admin.id)
    later = datetime.now(UTC) + timedelta(minutes=15, seconds=1)
    world.set_clock(lambda: later)
    response = await world.client().post("/api/v1/auth/startup", json={"token": token})
    assert response.status_code == 401


async def test_startup_token_is_long_and_random(world: World) -> None:
    admin = world.users.get("admin")
    tokens = {world.context.auth.mint_startup_token(admin.id) for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) >= 43 for t in tokens)  # 256 bits, URL-safe base64


# Passwords and throttling, S5.


async def test_unknown_user_and_wrong_password_look_the_same(world: World) -> None:
    wrong = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": "not her password"}
    )
    unknown = await world.client().post(
        "/api/v1/auth/login", json={"username": "nobody", "password": "not her password"}
    )
    world.users.set_active("alice", False, actor="test")
    disabled = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    for response in (wrong, unknown, disabled):
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "invalid user name or password"
        assert "set-cookie" not in response.headers


async def test_user_name_is_case_folded(world: World) -> None:
    response = await world.client().post(
        "/api/v1/auth/login", json={"username": "ALICE", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_stored_password_is_argon2id(world: World) -> None:
    from safeboard.accounts import repository

    with world.services.engine.connect() as conn:
        stored = repository.password_hash(conn, world.users.get("alice").id)
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2" in stored
    assert PASSWORD not in stored


async def test_rehash_on_login_when_parameters_rise(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    weak = build_world(make_settings, db_url)
    weak.user("carol")
    await weak.close()
    stronger = build_world(
        make_settings, db_url, auth={"argon2_memory_kib": 19456, "argon2_time_cost": 3}
    )
    try:
        client = stronger.client()
        response = await client.post(
            "/api/v1/auth/login", json={"username": "carol", "password": PASSWORD}
        )
        assert response.status_code == 200
        from safeboard.accounts import repository

        with stronger.services.engine.connect() as conn:
            stored = repository.password_hash(conn, stronger.users.get("carol").id)
        assert stored is not None
        assert "t=3" in stored
    finally:
        await stronger.close()


async def test_throttled_after_five_failures_even_with_right_password(world: World) -> None:
    client = world.client()
    for _ in range(5):
        response = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "wrong wrong wrong"}
        )
        assert response.status_code == 401
    locked = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert locked.json()["error"]["code"] == "rate_limited"
    # The lock is on the case-folded name: another spelling does not get around it.
    other = world.client(address="10.9.9.9")
    same = await other.post("/api/v1/auth/login", json={"username": "Alice", "password": PASSWORD})
    assert same.status_code == 429


async def test_throttled_per_client_address(world: World) -> None:
    client = world.client(address="192.0.2.7")
    for i in range(5):
        await client.post(
            "/api/v1/auth/login", json={"username": f"guess{i}", "password": "wrong wrong wrong"}
        )
    response = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
    )
    assert response.status_code == 429
    elsewhere = world.client(address="192.0.2.8")
    ok = await elsewhere.post(
        "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
    )
    assert ok.status_code == 200


# Sessions, S6.


async def test_plain_loopback_cookie(world: World) -> None:
    response = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    header = response.headers["set-cookie"]
    morsel = _cookie(header)["safeboard-8080"]  # the port in the name: one per server
    assert morsel["httponly"]
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert not morsel["domain"]
    assert len(morsel.value) >= 43
    assert morsel.value not in response.text  # the id is only ever in Set-Cookie
    assert response.json()["binding"] not in header  # the binding only ever in the body


async def test_tls_cookie_is_host_prefixed_and_secure(tls_world: World) -> None:
    response = await tls_world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    name = session_cookie_name(tls_world.base_url)
    assert name == f"__Host-safeboard-{tls_world.settings.port}"
    morsel = _cookie(response.headers["set-cookie"])[name]
    assert morsel["secure"]
    assert morsel["httponly"]
    assert morsel["path"] == "/"
    assert not morsel["domain"]


async def test_each_sign_in_gets_a_new_session_id(world: World) -> None:
    first, _ = await world.signed_in("alice")
    second, _ = await world.signed_in("alice")
    name = session_cookie_name(world.base_url)
    assert first.cookies[name] != second.cookies[name]
    assert first.headers[BINDING_HEADER] != second.headers[BINDING_HEADER]


async def test_session_ids_are_stored_only_as_hashes(world: World) -> None:
    client, _ = await world.signed_in("alice")
    cookie = client.cookies[session_cookie_name(world.base_url)]
    with world.services.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT id_hash FROM sessions")]
    assert stored
    assert cookie not in stored


async def test_logout_deletes_the_session(world: World) -> None:
    client, csrf = await world.signed_in("alice")
    name = session_cookie_name(world.base_url)
    cookie = client.cookies[name]
    response = await client.post("/api/v1/auth/logout", headers=world.unsafe(csrf))
    assert response.status_code == 204
    replay = world.client(**{BINDING_HEADER: client.headers[BINDING_HEADER]})
    replay.cookies.set(name, cookie)
    assert (await replay.get("/api/v1/auth/session")).status_code == 401


async def test_idle_timeout(world: World) -> None:
    client, _ = await world.signed_in("alice")
    idle = timedelta(minutes=world.settings.auth.session_idle_minutes)
    later = datetime.now(UTC) + idle + timedelta(seconds=5)
    world.set_clock(lambda: later)
    assert (await client.get("/api/v1/auth/session")).status_code == 401


async def test_activity_keeps_a_session_alive_until_its_absolute_end(world: World) -> None:
    client, _ = await world.signed_in("alice")
    start = datetime.now(UTC)
    step = timedelta(minutes=world.settings.auth.session_idle_minutes - 1)
    now = start
    while now + step < start + timedelta(days=world.settings.auth.session_max_days):
        now += step
        moment = now
        world.set_clock(lambda moment=moment: moment)
        assert (await client.get("/api/v1/auth/session")).status_code == 200
    end = start + timedelta(days=world.settings.auth.session_max_days, seconds=1)
    world.set_clock(lambda: end)
    assert (await client.get("/api/v1/auth/session")).status_code == 401


async def test_password_change_ends_other_sessions(world: World) -> None:
    here, csrf = await world.signed_in("alice")
    there, _ = await world.signed_in("alice")
    new = "a different long passphrase 99"
    response = await here.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=world.unsafe(csrf),
    )
    assert response.status_code == 204
    assert (await here.get("/api/v1/auth/session")).status_code == 200
    assert (await there.get("/api/v1/auth/session")).status_code == 401
    relogin = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": new}
    )
    assert relogin.status_code == 200


async def test_weak_new_password_names_the_rule(world: World) -> None:
    client, csrf = await world.signed_in("alice")
    response = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        headers=world.unsafe(csrf),
    )
    assert response.status_code == 422
    assert "common" in response.json()["error"]["message"]


async def test_admin_can_end_all_sessions_of_a_user(world: World) -> None:
    client, _ = await world.signed_in("alice")
    admin, csrf = await world.signed_in("admin")
    response = await admin.delete("/api/v1/users/alice/sessions", headers=world.unsafe(csrf))
    assert response.status_code == 204
    assert (await client.get("/api/v1/auth/session")).status_code == 401


# Cross-site request forgery, S7.


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, False),  # no token
        ({"X-CSRF-Token": "0" * 64}, False),  # wrong token
        ({"X-CSRF-Token": "RIGHT", "Origin": "null"}, False),
        ({"X-CSRF-Token": "RIGHT", "Origin": "https://evil.example"}, False),
        ({"X-CSRF-Token": "RIGHT", "Origin": "http://127.0.0.1:9999"}, False),  # other port
        ({"X-CSRF-Token": "RIGHT", "Referer": "https://evil.example/x"}, False),
        ({"X-CSRF-Token": "RIGHT"}, False),  # neither Origin nor Referer
        ({"X-CSRF-Token": "RIGHT", "Origin": "http://127.0.0.1:8080"}, True),
        ({"X-CSRF-Token": "RIGHT", "Referer": "http://127.0.0.1:8080/keys"}, True),
    ],
)
async def test_cookie_requests_need_csrf_token_and_same_origin(
    world: World, headers: dict[str, str], allowed: bool
) -> None:
    client, csrf = await world.signed_in("alice")
    sent = {k: (csrf if v == "RIGHT" else v) for k, v in headers.items()}
    response = await client.post("/api/v1/keys", json={"name": "k"}, headers=sent)
    assert response.status_code == (201 if allowed else 403), response.text


async def test_bearer_requests_are_exempt_from_csrf(world: World) -> None:
    token = world.key("alice")
    client = world.client(Authorization=f"Bearer {token}")
    response = await client.post("/api/v1/keys", json={"name": "k"}, headers={"Origin": "null"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/login"},
    ],
)
async def test_login_csrf_is_refused(world: World, headers: dict[str, str]) -> None:
    response = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


async def test_login_refuses_form_posts(world: World) -> None:
    response = await world.client().post(
        "/api/v1/auth/login",
        content=f'{{"username": "alice", "password": "{PASSWORD}"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 403


async def test_next_redirect_is_made_safe(world: World) -> None:
    for evil in ("//evil.example", "/\\evil.example", "https://evil.example", "%2F%2Fevil.example"):
        response = await world.client().post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, "next": evil}
        )
        assert response.json()["redirect"] == "/"
    fine = await world.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, "next": "/runs?x=1"}
    )
    assert fine.json()["redirect"] == "/runs?x=1"
