"""Races and takeovers found in review: concurrent demotions, guess bursts, invitations
used to reset passwords, keys that outlive a role (S5, S6, S8, S9, S16)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from safeboard.audit import service as audit
from safeboard.auth.permissions import Role, Scope
from safeboard.errors import Conflict
from safeboard.server.bootstrap import Bootstrapped, bootstrap
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


async def test_two_demotions_at_once_keep_an_admin(world: World) -> None:
    world.user("admin2", Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(name: str) -> None:
        barrier.wait()
        try:
            world.users.set_role(name, Role.MEMBER, actor="test")
            outcomes.append("demoted")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=demote, args=(n,)) for n in ("admin", "admin2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["demoted", "refused"]
    assert any(u.role is Role.ADMIN and u.is_active for u in world.users.list_all())


async def test_a_burst_of_guesses_gets_only_five_password_checks(world: World) -> None:
    client = world.client()

    async def guess(i: int) -> int:
        response = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": f"guess {i} wrong"}
        )
        return response.status_code

    statuses = await asyncio.gather(*(guess(i) for i in range(30)))
    assert statuses.count(401) <= 5
    assert statuses.count(429) >= 25


async def test_a_successful_sign_in_is_not_held_against_the_address(world: World) -> None:
    for _ in range(8):  # more successes than the failure limit, from one address
        await world.signed_in("alice")


async def test_an_invitation_ends_the_old_sessions(world: World) -> None:
    old, _ = await world.signed_in("alice")
    _, token = world.users.invite("alice", actor="test")
    accepted = await world.client().post(
        "/api/v1/auth/invite", json={"token": token, "password": "brand new passphrase 77"}
    )
    assert accepted.status_code == 200
    assert (await old.get("/api/v1/auth/session")).status_code == 401


@pytest.mark.parametrize("scope", list(Scope))
async def test_no_api_key_can_mint_an_invitation(world: World, scope: Scope) -> None:
    """A leaked key must not become a password: not the passwordless owner's made at first
    start, not an account that has one, not a new admin account the key itself adds."""
    world.user("owner", Role.ADMIN, password=None)  # as the first start makes it
    key = world.client(Authorization=f"Bearer {world.key('admin', scope)}")
    for target in ("owner", "alice", "admin", "nobody-at-all"):
        refused = await key.post(f"/api/v1/users/{target}/invite")
        assert refused.status_code == 403, (target, refused.text)
        assert "signed-in session" in refused.json()["error"]["message"]
    if scope is Scope.ADMIN:  # adding an account stays possible, but it has no way in
        added = await key.post("/api/v1/users", json={"username": "mallory", "role": "admin"})
        assert added.status_code == 201
        assert (await key.post("/api/v1/users/mallory/invite")).status_code == 403
    session, csrf = await world.signed_in("admin")
    for target in ("owner", "alice"):  # a signed-in admin invites, as before
        invited = await session.post(f"/api/v1/users/{target}/invite", headers=world.unsafe(csrf))
        assert invited.status_code == 200
    _, token = world.users.invite("owner", actor="cli:test")  # the CLI's local access
    accepted = await world.client().post(
        "/api/v1/auth/invite", json={"token": token, "password": "brand new passphrase 77"}
    )
    assert accepted.status_code == 200


async def test_the_discovery_key_cannot_give_the_owner_a_password(world: World) -> None:
    """The first start's admin has no password, and its admin-scope key sits in the
    discovery file. A copy of that key must not yield a password or a session that outlives
    the key: not the owner's, nor one of a new admin account the key adds for itself."""
    started = bootstrap(world.services, None)
    token = json.loads(started.discovery_path.read_text())["api_key"]
    key = world.client(Authorization=f"Bearer {token}")
    assert (await key.get("/api/v1/users")).status_code == 200  # an admin key indeed
    assert (await key.post(f"/api/v1/users/{started.admin}/invite")).status_code == 403
    added = await key.post("/api/v1/users", json={"username": "backdoor", "role": "admin"})
    assert added.status_code == 201
    assert (await key.post("/api/v1/users/backdoor/invite")).status_code == 403
    assert not world.users.get(started.admin).has_password
    assert not world.users.get("backdoor").has_password
    invites = [e for e in audit.list_entries(world.services.engine) if e.action == "invite.issued"]
    assert invites == []


async def test_demotion_revokes_keys_that_never_expire(world: World) -> None:
    world.user("admin2", Role.ADMIN)
    forever = world.key("admin2", Scope.READ, never_expires=True)
    expiring = world.key("admin2", Scope.READ)
    world.users.set_role("admin2", Role.MEMBER, actor="test")
    assert (await world.client(Authorization=f"Bearer {forever}").get(
        "/api/v1/auth/session")).status_code == 401  # fmt: skip
    assert (await world.client(Authorization=f"Bearer {expiring}").get(
        "/api/v1/auth/session")).status_code == 200  # fmt: skip


async def test_wrong_current_passwords_are_throttled(world: World) -> None:
    client, csrf = await world.signed_in("alice")
    statuses = []
    for _ in range(7):
        response = await client.post(
            "/api/v1/auth/password",
            json={"current_password": "not it at all", "new_password": "whatever long pass 9"},
            headers=world.unsafe(csrf),
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]


async def test_logout_is_for_sessions(world: World) -> None:
    key = world.client(Authorization=f"Bearer {world.key('alice', Scope.ADMIN)}")
    response = await key.post("/api/v1/auth/logout")
    assert response.status_code == 400
    assert not [e for e in audit.list_entries(world.services.engine) if e.action == "logout"]


async def test_failed_sign_ins_never_record_what_was_typed_as_a_name(world: World) -> None:
    typed = "my secret passw0rd!"
    await world.client().post("/api/v1/auth/login", json={"username": typed, "password": "x"})
    await world.client().post("/api/v1/auth/login", json={"username": "alice", "password": "x"})
    failures = [e for e in audit.list_entries(world.services.engine) if e.action == "login.failed"]
    assert [e.target for e in failures] == ["unknown user", "user:alice"]
    assert typed not in str([(e.target, e.detail) for e in failures])


async def test_a_start_keeps_a_good_local_key_and_replaces_others_on_the_record(
    world: World,
) -> None:
    """Issue 11: a restart keeps the discovery file's key while it is good, so scripts that
    run across it go on; a revoked, foreign or half-spent key is replaced (and revoked)."""
    engine = world.services.engine
    first = bootstrap(world.services, None)
    second = bootstrap(world.services, None)
    assert first.login_link != second.login_link  # the startup link is new at every start
    old_token = first.login_link.split("#token=")[1] if first.login_link else ""
    refused = await world.client().post("/api/v1/auth/startup", json={"token": old_token})
    assert refused.status_code == 401

    def key_of(started: Bootstrapped) -> str:
        return str(json.loads(started.discovery_path.read_text())["api_key"])

    def actions() -> list[str]:
        return [e.action for e in audit.list_entries(engine) if e.action.startswith("key.")]

    kept = key_of(first)
    assert key_of(second) == kept
    assert actions() == ["key.created"]
    session = world.client(Authorization=f"Bearer {kept}")
    assert (await session.get("/api/v1/auth/session")).status_code == 200
    # Not the admin's local key (a key of another kind, or garbage): a new one, on record.
    for foreign in (world.key("admin", Scope.ADMIN), "sb_garbage", kept[:-1] + "x"):
        first.discovery_path.write_text(json.dumps({"api_key": foreign}))
        previous, kept = kept, key_of(bootstrap(world.services, None))
        assert kept not in (foreign, previous)
        assert key_of(bootstrap(world.services, None)) == kept  # and kept then
    assert (await session.get("/api/v1/auth/session")).status_code == 401  # the first, revoked
    # Past half its lifetime (90 days by default), a start replaces it.
    later = datetime.now(UTC) + timedelta(days=46)
    world.set_clock(lambda: later)
    assert key_of(bootstrap(world.services, None)) != kept
    entries = [e for e in audit.list_entries(engine) if e.action == "key.revoked"]
    assert len(entries) == 4
    assert all(e.actor == "system:start" for e in entries)
    assert all(e.detail["reason"] == "replaced at start" for e in entries)
