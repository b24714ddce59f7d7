"""The session cookie counts only with its session's binding (S6, auth/binding.py), on
SQLite and PostgreSQL.

Cookies ignore ports, so any web service on the host may hold the cookie; the binding is
returned once, in the sign-in response's body, and stored only as an HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from safeboard.storage import create_engine, pending_model_changes, upgrade
from safeboard.storage.migrate import alembic_config
from safeboard.tables import Base  # every domain's tables, for the model check
from tests.integration.identity_world import PASSWORD, World, build_world
from tests.support.sessions import BINDING_HEADER, bind, session_cookie_name

pytestmark = pytest.mark.anyio

SESSION = "/api/v1/auth/session"
HTML = {"Accept": "text/html"}


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


async def _sign_in(world: World, name: str) -> tuple[httpx.AsyncClient, httpx.Response]:
    client = world.client()
    response = await client.post(
        "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return client, response


def _cookie_only(world: World, client: httpx.AsyncClient, **headers: str) -> httpx.AsyncClient:
    """A client holding ``client``'s session cookie, and only ``headers`` besides."""
    name = session_cookie_name(world.base_url)
    other = world.client(**headers)
    other.cookies.set(name, client.cookies[name])
    return other


async def test_the_cookie_alone_signs_nobody_in(world: World) -> None:
    client, response = await _sign_in(world, "alice")
    csrf = response.json()["csrf_token"]
    alone = _cookie_only(world, client)

    refused = await alone.get(SESSION)
    assert refused.status_code == 401
    assert "alice" not in refused.text
    assert (await alone.get("/api/v1/projects")).status_code == 401
    page = await alone.get("/account", headers=HTML)  # a page: off to the sign-in form
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Faccount"
    # Writes too, even with the CSRF token and our Origin: no key is made.
    made = await alone.post("/api/v1/keys", json={"name": "k"}, headers=world.unsafe(csrf))
    assert made.status_code == 401
    bind(client, response)
    assert (await client.get("/api/v1/keys")).json() == []


async def test_a_wrong_binding_signs_nobody_in_and_ends_nothing(world: World) -> None:
    client, response = await _sign_in(world, "alice")
    binding = response.json()["binding"]
    _, admins = await _sign_in(world, "admin")
    wrong = [
        "",
        "0" * 43,
        binding[:-1],
        binding + "A",
        binding.upper() if binding.upper() != binding else binding.lower(),
        admins.json()["binding"],  # another session's, a valid one
    ]
    for value in wrong:
        attempt = _cookie_only(world, client, **{BINDING_HEADER: value})
        refused = await attempt.get(SESSION)
        assert refused.status_code == 401, value
        assert "alice" not in refused.text
    # Someone who holds only the cookie cannot end the session by trying.
    right = _cookie_only(world, client, **{BINDING_HEADER: binding})
    who = await right.get(SESSION)
    assert who.status_code == 200, who.text
    assert who.json()["user"]["username"] == "alice"


async def test_the_right_binding_with_the_cookie_is_a_session(world: World) -> None:
    client, response = await _sign_in(world, "alice")
    bind(client, response)
    assert (await client.get(SESSION)).status_code == 200
    assert (await client.get("/account", headers=HTML)).status_code == 200
    made = await client.post(
        "/api/v1/keys", json={"name": "k"}, headers=world.unsafe(response.json()["csrf_token"])
    )
    assert made.status_code == 201, made.text
    # The binding without the cookie is nothing either.
    stranger = world.client(**{BINDING_HEADER: response.json()["binding"]})
    assert (await stranger.get(SESSION)).status_code == 401


async def test_every_sign_in_returns_its_own_binding_in_the_body_only(world: World) -> None:
    admin = world.users.get("admin")
    startup = await world.client().post(
        "/api/v1/auth/startup", json={"token": world.context.auth.mint_startup_token(admin.id)}
    )
    world.user("bob", password=None)
    _, invitation = world.users.invite("bob", actor="test")
    invited = await world.client().post(
        "/api/v1/auth/invite", json={"token": invitation, "password": PASSWORD}
    )
    _, login = await _sign_in(world, "alice")
    bindings = set()
    for response in (startup, invited, login):
        assert response.status_code == 200, response.text
        binding = response.json()["binding"]
        assert len(binding) >= 43  # 256 bits, URL-safe
        assert binding not in response.headers.get("set-cookie", "")
        bindings.add(binding)
    assert len(bindings) == 3


async def test_no_other_response_carries_the_binding(world: World) -> None:
    client, response = await _sign_in(world, "admin")
    binding = bind(client, response)
    paths = [
        SESSION,
        "/api/v1/auth/sessions",
        "/api/v1/keys",
        "/api/v1/users",
        "/api/v1/openapi.json",
        "/",
        "/login",
        "/account",
        "/admin/users",
        "/admin/sessions",
        "/admin/audit",
        "/sw.js",
    ]
    for path in paths:
        answer = await client.get(path, headers=HTML if not path.startswith("/api") else {})
        assert answer.status_code == 200, (path, answer.status_code)
        assert binding not in answer.text, path
        assert binding not in str(answer.headers), path
    csrf = response.json()["csrf_token"]
    out = await client.post("/api/v1/auth/logout", headers=world.unsafe(csrf))
    assert out.status_code == 204
    assert binding not in out.text + str(out.headers)


async def test_only_an_hmac_of_the_binding_is_stored(world: World) -> None:
    _, response = await _sign_in(world, "alice")
    binding = response.json()["binding"]
    with world.services.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT binding_hash FROM sessions")]
        dump = [
            str(row)
            for table in ("sessions", "audit_log", "one_time_tokens")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")  # noqa: S608
        ]
    key = world.settings.secure.session_secret.get_secret_value().encode()
    expected = hmac.new(key, b"binding:" + binding.encode(), hashlib.sha256).hexdigest()
    assert stored == [expected]
    assert hashlib.sha256(binding.encode()).hexdigest() not in stored
    assert not [line for line in dump if binding in line]


async def test_the_service_worker_is_served_from_the_root(world: World) -> None:
    answer = await world.client().get("/sw.js")  # public: the sign-in page registers it
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "worker-src 'self'" in answer.headers["content-security-policy"]
    assert BINDING_HEADER in answer.text


def test_the_migration_ends_sessions_that_have_no_binding(empty_db_url: str) -> None:
    """A session from before 0008 could never be used again (it has no binding): the
    upgrade deletes it, and the column is NOT NULL from then on."""
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), "0007")
        tables = sa.MetaData()
        tables.reflect(engine, only=["users", "sessions"])
        now = datetime(2026, 12, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(tables.tables["users"]).values(
                    id=1, username="alice", display_name="", role="member", is_active=True,
                    created_at=now,
                )
            )  # fmt: skip
            conn.execute(
                sa.insert(tables.tables["sessions"]).values(
                    id_hash="a" * 64, user_id=1, created_at=now, last_seen_at=now,
                    expires_at=now + timedelta(days=7), address="", user_agent="",
                )
            )  # fmt: skip
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM sessions").scalar() == 0
        assert pending_model_changes(engine) == []
        assert Base.metadata.tables["sessions"].c.binding_hash.nullable is False
    finally:
        engine.dispose()
