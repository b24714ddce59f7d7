"""What a refused API key or a refused action says (issue 11): one code per cause, so the
SDK can name the fix; ``key_revoked`` / ``key_expired`` only to whoever holds the key's whole
secret, ``key_invalid`` (one message, as before) to everyone else (docs/security.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from safeboard.auth.permissions import Role, Scope
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


async def refusal(
    world: World,
    token: str,
    method: str = "GET",
    path: str = "/api/v1/auth/session",
    **kwargs: object,
) -> tuple[int, str, str]:
    client = world.client(Authorization=f"Bearer {token}")
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def wrong_secret(token: str) -> str:
    prefix, secret = token.rsplit("_", 1)
    return f"{prefix}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


async def test_revoked_key_is_named_only_to_its_holder(world: World) -> None:
    token = world.key("alice", Scope.WRITE)
    world.context.keys.revoke(world.context.keys.principal(token, "x"), token.split("_")[1])
    status, code, message = await refusal(world, token)
    assert (status, code) == (401, "key_revoked")
    assert "revoked" in message
    assert "safeboard key create --scope write" in message
    # Whoever guesses at the key's id without its secret learns nothing of its state.
    assert (await refusal(world, wrong_secret(token)))[1] == "key_invalid"


async def test_expired_key_is_named_only_to_its_holder(world: World) -> None:
    token = world.key("alice", Scope.WRITE, days=1)
    later = datetime.now(UTC) + timedelta(days=1, seconds=1)
    world.set_clock(lambda: later)
    status, code, message = await refusal(world, token)
    assert (status, code) == (401, "key_expired")
    assert "expired on" in message
    assert "safeboard key create" in message
    assert (await refusal(world, wrong_secret(token)))[1] == "key_invalid"


async def test_unknown_mistyped_and_disabled_keys_say_the_same(world: World) -> None:
    token = world.key("alice", Scope.WRITE)
    world.users.set_active("alice", False, actor="test")
    answers = {
        await refusal(world, token),  # a disabled owner
        await refusal(world, wrong_secret(token)),
        await refusal(world, "sb_000000000000_" + "A" * 43),
        await refusal(world, "sb_short"),
        await refusal(world, "not-a-safeboard-key"),
    }
    (only,) = answers
    assert only[:2] == (401, "key_invalid")
    assert "safeboard key create --scope write" in only[2]


async def test_a_read_key_writing_is_told_its_scope(world: World) -> None:
    token = world.key("alice", Scope.READ)
    status, code, message = await refusal(
        world, token, "POST", "/api/v1/projects/p/runs", json={"name": "r"}
    )
    assert (status, code) == (403, "scope_insufficient")
    assert message == (
        "this API key has read scope, so it may not write to this project; use a key with "
        "write scope: `safeboard login URL --scope write` on your machine, the dashboard's "
        "account page, or `safeboard key create --scope write` on the server's machine"
    )
    status, code, message = await refusal(
        world, token, "POST", "/api/v1/projects", json={"name": "p"}
    )
    assert (status, code) == (403, "scope_insufficient")
    assert "may not create projects" in message


async def test_a_viewer_writing_is_told_its_role_and_an_outsider_sees_nothing(
    world: World,
) -> None:
    alice = world.key("alice", Scope.ADMIN)
    made = await world.client(Authorization=f"Bearer {alice}").post(
        "/api/v1/projects", json={"name": "vision"}
    )
    assert made.status_code == 201, made.text
    bob = world.key("bob", Scope.WRITE)
    run = {"json": {"name": "r"}}
    status, code, message = await refusal(world, bob, "POST", "/api/v1/projects/vision/runs", **run)
    assert (status, code, message) == (404, "not_found", "no such project")  # as before
    granted = await world.client(Authorization=f"Bearer {alice}").put(
        "/api/v1/projects/vision/grants/bob", json={"role": "viewer"}
    )
    assert granted.status_code == 204, granted.text
    status, code, message = await refusal(world, bob, "POST", "/api/v1/projects/vision/runs", **run)
    assert (status, code) == (403, "role_insufficient")
    assert message == (
        "your role in this project (viewer) may not write to it; ask a project owner to grant "
        "you the editor role"
    )


async def test_a_key_bound_to_one_project_says_so_outside_it(world: World) -> None:
    """A project-bound key creating a project was refused with a plain Forbidden, which
    the SDK reported as "no access: ask its owner for a grant" to the project's owner."""
    writer = world.key("alice", Scope.WRITE)
    made = await world.client(Authorization=f"Bearer {writer}").post(
        "/api/v1/projects", json={"name": "mine"}
    )
    assert made.status_code == 201, made.text
    bound = world.key("alice", Scope.WRITE, project_id=made.json()["id"])
    status, code, message = await refusal(
        world, bound, "POST", "/api/v1/projects", json={"name": "other"}
    )
    assert (status, code) == (403, "key_project_bound")
    assert message.startswith("this API key is bound to one project, so it may not create")
    assert "a key that is not bound to a project" in message
