"""Every route has an authorization decision, and the decisions hold (S3, S9)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Mount

from safeboard.auth.dependencies import decision_of
from safeboard.auth.permissions import SESSION_ONLY, Permission, Role, Scope
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

PUBLIC_PATHS = {
    "/healthz",
    "/",
    "/login",
    "/invite",
    "/sw.js",  # the service worker that sends the session binding (auth/binding.py)
    "/api/v1/auth/login",
    "/api/v1/auth/startup",
    "/api/v1/auth/invite",
    "/api/v1/auth/invite/lookup",  # whom a valid token invites; the token is the credential
    "/files/preview/{token}",  # the signed link is the credential (S12)
    "/api/v1/agent/enroll",  # the join token in the body is the credential (docs/agents.md)
}
PUBLIC_MOUNTS = {"/static"}


def _decisions(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        if dependency.call is not None and (decision := decision_of(dependency.call)) is not None:
            yield decision
        yield from _decisions(dependency)


def _all_routes(app: FastAPI) -> list[Any]:
    """Every route with its effective path, methods and dependencies. FastAPI >= 0.16x keeps
    included routers as lazily flattened entries; iter_route_contexts flattens them."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iterate(app.routes)) if iterate else list(app.routes)


def _routes(app: FastAPI) -> list[Any]:
    return [r for r in _all_routes(app) if isinstance(getattr(r, "original_route", r), APIRoute)]


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("alice")
    yield built
    await built.close()


def test_every_route_declares_exactly_one_decision(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    undecided, public = [], set()
    for route in _routes(app):
        decisions = set(_decisions(route.dependant))
        if len(decisions) != 1:
            undecided.append((route.path, sorted(map(str, decisions))))
        elif decisions == {"public"}:
            public.add(route.path)
    assert undecided == [], f"routes without exactly one decision: {undecided}"
    # Public routes are few and named here, so a new one is a deliberate change.
    assert public == PUBLIC_PATHS
    mounts = {
        r.path for r in _all_routes(app) if isinstance(getattr(r, "original_route", r), Mount)
    }
    assert mounts == PUBLIC_MOUNTS


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _protected(app: FastAPI) -> list[tuple[str, str, object]]:
    found = []
    for route in _routes(app):
        decisions = set(_decisions(route.dependant))
        if decisions != {"public"}:
            for method in sorted(route.methods - {"HEAD"}):
                found.append((method, _concrete(route.path), decisions.pop()))
    return found


def test_the_walk_catches_an_undecided_route(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()

    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    undecided = [r.path for r in _routes(app) if len(set(_decisions(r.dependant))) != 1]
    assert undecided == ["/api/v1/forgotten"]


async def test_protected_routes_refuse_anonymous_requests(world: World) -> None:
    client = world.client()
    assert len(_protected(world.app)) >= 13
    for method, path, _ in _protected(world.app):
        response = await client.request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "unauthenticated"
        assert "www-authenticate" in response.headers


async def test_protected_routes_refuse_a_bad_key(world: World) -> None:
    client = world.client(Authorization="Bearer sb_0123456789ab_" + "A" * 43)
    for method, path, _ in _protected(world.app):
        response = await client.request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 401, (method, path)


ADMIN_ONLY = {
    Permission.USERS_READ,
    Permission.USERS_MANAGE,
    Permission.USERS_INVITE,
    Permission.AUDIT_READ,
    Permission.AGENTS_MANAGE,
}


async def test_members_get_403_on_admin_routes(world: World) -> None:
    client, csrf = await world.signed_in("alice")
    checked = 0
    for method, path, permission in _protected(world.app):
        if permission not in ADMIN_ONLY:
            continue
        headers = world.unsafe(csrf) if method != "GET" else {}
        response = await client.request(
            method, path, json={} if method != "GET" else None, headers=headers
        )
        assert response.status_code == 403, (method, path, response.status_code)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "status"),
    [
        (Scope.READ, "GET", "/api/v1/keys", None, 200),
        (Scope.READ, "POST", "/api/v1/keys", {"name": "x"}, 403),
        (Scope.WRITE, "POST", "/api/v1/keys", {"name": "x"}, 403),
        (Scope.ADMIN, "POST", "/api/v1/keys", {"name": "x"}, 201),
        (Scope.READ, "GET", "/api/v1/users", None, 403),  # even for an admin's key
        (Scope.ADMIN, "GET", "/api/v1/users", None, 200),
        (
            Scope.ADMIN,
            "POST",
            "/api/v1/auth/password",
            {"current_password": "x", "new_password": "y" * 20},
            403,
        ),  # keys never change passwords
    ],
)
async def test_key_scope_bounds_what_an_admin_key_can_do(
    world: World, scope: Scope, method: str, path: str, body: Any, status: int
) -> None:
    client = world.client(Authorization=f"Bearer {world.key('admin', scope)}")
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("scope", list(Scope))
async def test_session_only_routes_refuse_every_api_key(world: World, scope: Scope) -> None:
    """Every route that sets a password or opens a session (SESSION_ONLY) refuses an admin's
    key of any scope; a route added later with such a permission is covered by the walk."""
    client = world.client(Authorization=f"Bearer {world.key('admin', scope)}")
    checked = set()
    for method, path, permission in _protected(world.app):
        if permission not in SESSION_ONLY:
            continue
        response = await client.request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 403, (method, path, response.status_code)
        checked.add(permission)
    assert checked == SESSION_ONLY


async def test_an_agent_credential_reaches_only_agent_routes(world: World) -> None:
    """S9: walking every route, an enrolled agent's credential is refused everywhere but
    on the agent routes (AGENT_CALL), which it passes (to the schema check: 422)."""
    client = world.client(Authorization=f"Bearer {world.agent()}")
    reached = set()
    for method, path, permission in _protected(world.app):
        response = await client.request(method, path, json={} if method != "GET" else None)
        if permission == Permission.AGENT_CALL:
            assert response.status_code == 422, (method, path, response.text)
            reached.add(path)
        else:
            assert response.status_code == 403, (method, path, response.status_code)
            assert response.json()["error"]["code"] == "forbidden"
    assert "/api/v1/agent/hello" in reached
    assert "/api/v1/agent/tasks/x1/x1/code" in reached  # a task's code


@pytest.mark.parametrize("scope", list(Scope))
async def test_no_user_credential_reaches_an_agent_route(world: World, scope: Scope) -> None:
    """S9: an admin's session or API key of any scope never passes for an agent."""
    key_client = world.client(Authorization=f"Bearer {world.key('admin', scope)}")
    session_client, csrf = await world.signed_in("admin")
    agent_routes = [(m, p) for m, p, perm in _protected(world.app) if perm == Permission.AGENT_CALL]
    assert agent_routes
    for method, path in agent_routes:
        response = await key_client.request(method, path, json={})
        assert response.status_code == 403, (method, path, response.status_code)
        response = await session_client.request(method, path, json={}, headers=world.unsafe(csrf))
        assert response.status_code == 403, (method, path, response.status_code)


async def test_member_key_with_admin_scope_gets_no_admin_powers(world: World) -> None:
    client = world.client(Authorization=f"Bearer {world.key('alice', Scope.ADMIN)}")
    assert (await client.get("/api/v1/users")).status_code == 403
    assert (await client.get("/api/v1/audit")).status_code == 403


async def test_project_bound_key_reaches_nothing_else(world: World) -> None:
    from safeboard.projects import repository as projects

    with world.services.engine.begin() as conn:
        project = projects.create(
            conn,
            name="mnist",
            owner_id=world.users.get("admin").id,
            now=world.users.get("admin").created_at,
        )
    token = world.key("admin", Scope.ADMIN, project_id=project.id)
    client = world.client(Authorization=f"Bearer {token}")
    assert (await client.get("/api/v1/auth/session")).status_code == 200
    assert (await client.get("/api/v1/users")).status_code == 403
    assert (await client.get("/api/v1/keys")).status_code == 403


async def test_openapi_needs_a_signed_in_user(world: World) -> None:
    assert (await world.client().get("/api/v1/openapi.json")).status_code == 401
    client = world.client(Authorization=f"Bearer {world.key('alice', Scope.READ)}")
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert "/api/v1/keys" in response.json()["paths"]
