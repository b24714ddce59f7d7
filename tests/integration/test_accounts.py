"""Account administration over the API and the audit trail it leaves (S5, S9, S16)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from safeboard.audit import service as audit
from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import PASSWORD, World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    yield built
    await built.close()


async def test_invitation_sets_a_password_once(world: World) -> None:
    admin, csrf = await world.signed_in("admin")
    added = await admin.post(
        "/api/v1/users", json={"username": "Bob", "role": "member"}, headers=world.unsafe(csrf)
    )
    assert added.status_code == 201
    assert added.json()["username"] == "bob"
    invite = await admin.post("/api/v1/users/bob/invite", headers=world.unsafe(csrf))
    assert invite.status_code == 200
    link = invite.json()["link"]
    assert "/invite#token=" in link  # in the fragment: never sent to a server or logged
    token = link.split("#token=")[1]
    weak = await world.client().post(
        "/api/v1/auth/invite", json={"token": token, "password": "short"}
    )
    assert weak.status_code == 422
    assert "12 characters" in weak.json()["error"]["message"]
    accepted = await world.client().post(
        "/api/v1/auth/invite", json={"token": token, "password": PASSWORD}
    )
    assert accepted.status_code == 200  # the failed attempt above did not spend it
    assert accepted.json()["user"]["has_password"] is True  # it was false (issue 11 review)
    again = await world.client().post(
        "/api/v1/auth/invite", json={"token": token, "password": PASSWORD}
    )
    assert again.status_code == 401
    assert (await world.signed_in("bob"))[0] is not None


async def _invite(world: World, username: str, display_name: str = "") -> str:
    admin, csrf = await world.signed_in("admin")
    body = {"username": username, "role": "member", "display_name": display_name}
    added = await admin.post("/api/v1/users", json=body, headers=world.unsafe(csrf))
    assert added.status_code == 201, added.text
    invite = await admin.post(f"/api/v1/users/{username}/invite", headers=world.unsafe(csrf))
    assert invite.status_code == 200, invite.text
    return str(invite.json()["link"])


async def test_an_invitation_names_its_user_without_being_spent(world: World) -> None:
    token = (await _invite(world, "dora", "Dora E.")).split("#token=")[1]
    stranger = world.client()
    lookup = await stranger.post("/api/v1/auth/invite/lookup", json={"token": token})
    assert lookup.status_code == 200, lookup.text
    assert lookup.json() == {"username": "dora", "display_name": "Dora E."}
    assert (await stranger.post("/api/v1/auth/invite/lookup", json={"token": token})).is_success
    accept = {"token": token, "password": PASSWORD}
    accepted = await stranger.post("/api/v1/auth/invite", json=accept)
    assert accepted.status_code == 200  # the lookups did not spend it
    # A spent, wrong or other kind of token tells nothing: the same 401 for each.
    startup = world.context.auth.mint_startup_token(1)
    for other in (token, token[:-1] + ("A" if token[-1] != "A" else "B"), startup, "x"):
        refused = await stranger.post("/api/v1/auth/invite/lookup", json={"token": other})
        assert refused.status_code == 401, other
        assert refused.json()["error"]["message"] == "this invite link is invalid, used or expired"
        assert "dora" not in refused.text
    # Cross-site pages cannot ask (the sign-in routes' login-CSRF check).
    evil = await stranger.post(
        "/api/v1/auth/invite/lookup",
        json={"token": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert evil.status_code == 403


async def test_invitation_links_use_the_public_url(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    world = build_world(make_settings, db_url, server={"public_url": "https://ML.example.com/"})
    world.user("admin", Role.ADMIN)
    try:
        assert (await _invite(world, "erin")).startswith("https://ml.example.com/invite#token=")
    finally:
        await world.close()


async def test_last_active_admin_is_kept(world: World) -> None:
    admin, csrf = await world.signed_in("admin")
    demote = await admin.patch(
        "/api/v1/users/admin", json={"role": "member"}, headers=world.unsafe(csrf)
    )
    disable = await admin.patch(
        "/api/v1/users/admin", json={"active": False}, headers=world.unsafe(csrf)
    )
    assert demote.status_code == 409
    assert disable.status_code == 409
    assert "last active admin" in demote.json()["error"]["message"]
    world.user("second", Role.ADMIN)
    ok = await admin.patch(
        "/api/v1/users/second", json={"active": False}, headers=world.unsafe(csrf)
    )
    assert ok.status_code == 200
    assert ok.json()["is_active"] is False


async def test_disabling_ends_sessions(world: World) -> None:
    world.user("carol")
    carol, _ = await world.signed_in("carol")
    admin, csrf = await world.signed_in("admin")
    await admin.patch("/api/v1/users/carol", json={"active": False}, headers=world.unsafe(csrf))
    assert (await carol.get("/api/v1/auth/session")).status_code == 401


async def test_unknown_fields_and_coercion_are_refused(world: World) -> None:
    admin, csrf = await world.signed_in("admin")
    extra = await admin.post(
        "/api/v1/users", json={"username": "dan", "is_admin": True}, headers=world.unsafe(csrf)
    )
    coerced = await admin.patch(
        "/api/v1/users/admin", json={"active": "false"}, headers=world.unsafe(csrf)
    )
    assert extra.status_code == 422
    assert coerced.status_code == 422


async def test_audit_trail_of_identity_events(world: World) -> None:
    await world.client().post("/api/v1/auth/login", json={"username": "admin", "password": "no"})
    admin, csrf = await world.signed_in("admin")
    await admin.post("/api/v1/users", json={"username": "erin"}, headers=world.unsafe(csrf))
    key = await admin.post("/api/v1/keys", json={"name": "ci"}, headers=world.unsafe(csrf))
    await admin.delete(f"/api/v1/keys/{key.json()['id']}", headers=world.unsafe(csrf))
    await admin.post("/api/v1/auth/logout", headers=world.unsafe(csrf))
    engine = world.services.engine
    actions = [entry.action for entry in audit.list_entries(engine)]
    for expected in (
        "user.created",
        "login.failed",
        "login.ok",
        "key.created",
        "key.revoked",
        "logout",
    ):
        assert expected in actions
    failed = next(e for e in audit.list_entries(engine) if e.action == "login.failed")
    assert failed.address == "127.0.0.1"
    assert "no" not in failed.detail.values()  # the attempted password is never recorded
    assert audit.verify(engine).ok
    listed = await world.client(Authorization=f"Bearer {world.key('admin')}").get("/api/v1/audit")
    assert listed.status_code == 200
    assert [e["action"] for e in listed.json()][: len(actions)] == actions
