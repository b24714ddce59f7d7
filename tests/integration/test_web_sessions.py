"""Your own sessions, as the account page lists and ends them (S6, S7), on SQLite and
PostgreSQL: /api/v1/auth/sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    built.user("bob")
    yield built
    await built.close()


async def test_you_see_your_sessions_and_end_another_one(world: World) -> None:
    laptop, laptop_csrf = await world.signed_in("alice")
    phone, _ = await world.signed_in("alice")
    await world.signed_in("bob")

    listed = await laptop.get("/api/v1/auth/sessions")
    assert listed.status_code == 200, listed.text
    sessions = listed.json()
    assert len(sessions) == 2  # bob's session is not alice's business
    assert sorted(s["current"] for s in sessions) == [False, True]
    assert all(len(s["id"]) == 16 for s in sessions)
    other = next(s["id"] for s in sessions if not s["current"])

    ended = await laptop.delete(f"/api/v1/auth/sessions/{other}", headers=world.unsafe(laptop_csrf))
    assert ended.status_code == 204, ended.text
    assert (await phone.get("/api/v1/auth/session")).status_code == 401
    assert (await laptop.get("/api/v1/auth/session")).status_code == 200
    assert [s["current"] for s in (await laptop.get("/api/v1/auth/sessions")).json()] == [True]

    # The audit log records it.
    admin, _ = await world.signed_in("admin")
    audit = (await admin.get("/api/v1/audit", params={"action": "sessions.revoked"})).json()
    assert [(e["actor"], e["target"]) for e in audit] == [("user:alice (session)", "user:alice")]


async def test_ending_a_session_needs_csrf_and_finds_only_your_own(world: World) -> None:
    alice, alice_csrf = await world.signed_in("alice")
    bob, bob_csrf = await world.signed_in("bob")
    bobs = (await bob.get("/api/v1/auth/sessions")).json()[0]["id"]

    # Without the CSRF token, or from another origin: refused (S7).
    refused = await bob.delete(f"/api/v1/auth/sessions/{bobs}")
    assert refused.status_code == 403
    foreign = {"X-CSRF-Token": bob_csrf, "Origin": "https://evil.example"}
    assert (await bob.delete(f"/api/v1/auth/sessions/{bobs}", headers=foreign)).status_code == 403

    # Alice cannot end Bob's session, nor learn that it exists.
    stolen = await alice.delete(f"/api/v1/auth/sessions/{bobs}", headers=world.unsafe(alice_csrf))
    assert stolen.status_code == 404
    assert stolen.json()["error"]["message"] == "no such session"
    assert (await bob.get("/api/v1/auth/session")).status_code == 200
    for junk in ("x" * 16, "a" * 300, bobs.upper()):
        answer = await alice.delete(
            f"/api/v1/auth/sessions/{junk}", headers=world.unsafe(alice_csrf)
        )
        assert answer.status_code == 404, (junk, answer.text)


async def test_an_api_key_lists_but_cannot_end_sessions(world: World) -> None:
    await world.signed_in("alice")
    key = world.key("alice")
    client = world.client(Authorization=f"Bearer {key}")
    listed = await client.get("/api/v1/auth/sessions")
    assert listed.status_code == 200
    assert [s["current"] for s in listed.json()] == [False]  # a key is not a session
    ref = listed.json()[0]["id"]
    assert (await client.delete(f"/api/v1/auth/sessions/{ref}")).status_code == 403
    assert (await client.get("/api/v1/auth/sessions")).json()[0]["id"] == ref
    made = await client.post("/api/v1/projects", json={"name": "only-this"})
    assert made.status_code == 201
    bound = world.client(Authorization=f"Bearer {world.key('alice', project_id=made.json()['id'])}")
    refused = await bound.get("/api/v1/auth/sessions")  # addresses and browsers: not its business
    assert refused.status_code == 403
