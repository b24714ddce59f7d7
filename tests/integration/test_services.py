"""One composition root (issue 12, section 2): ``build_services(settings, engine)`` builds
every service once; the app's routes and the start's bootstrap act through such an object,
the CLI's local commands through its users and keys alone (``build_accounts``), and a
route reaches its service by type."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from safeboard.account_services import AccountServices
from safeboard.auth.permissions import Role, Scope
from safeboard.cli.local import Local, open_local
from safeboard.errors import NotFound
from safeboard.provision import provided_by
from safeboard.server.bootstrap import bootstrap
from safeboard.services import Services, build_services, services_of
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.support.schema import migrate

pytestmark = pytest.mark.anyio
BASE_URL = "http://127.0.0.1:8080"


def _client(app: FastAPI, token: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)


def _admin_key(services: Services) -> str:
    services.users.add("admin", role=Role.ADMIN, actor="test")
    owner = Local(services).principal("admin")
    return services.keys.create(owner, name="test", scope=Scope.ADMIN)[1]


def test_each_service_is_built_once_and_shared(make_app: Callable[..., FastAPI]) -> None:
    services = services_of(make_app())
    assert services.auth_context.auth is services.auth
    assert services.auth_context.keys is services.keys
    assert services.runs.events is services.events
    assert services.metrics.events is services.events
    for field in dataclasses.fields(Services):
        engine = getattr(getattr(services, field.name), "engine", services.engine)
        assert engine is services.engine, field.name
    services.engine.dispose()


def test_each_service_is_found_by_its_declared_type(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    services = services_of(app)
    hints = typing.get_type_hints(Services)
    for field in dataclasses.fields(Services):
        assert provided_by(app, hints[field.name]) is getattr(services, field.name)
    services.engine.dispose()


async def test_routes_use_the_app_s_own_instances(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    services = services_of(app)
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    services.runs.clock = lambda: moment  # only this instance knows the moment
    token = _admin_key(services)
    async with _client(app, token) as client:
        assert (await client.post("/api/v1/projects", json={"name": "p"})).status_code == 201
        made = await client.post("/api/v1/projects/p/runs", json={"name": "r"})
        assert made.status_code == 201
        assert datetime.fromisoformat(made.json()["created_at"]) == moment
        shown = await client.get(f"/api/v1/runs/{made.json()['id']}")
        assert datetime.fromisoformat(shown.json()["created_at"]) == moment
    services.engine.dispose()


async def test_a_start_acts_through_the_app_s_services(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    services = services_of(app)
    started = bootstrap(services, None)
    token = json.loads(started.discovery_path.read_text())["api_key"]
    async with _client(app, token) as client:
        session = await client.get("/api/v1/auth/session")
    assert session.status_code == 200
    assert session.json()["user"]["username"] == started.admin
    services.engine.dispose()


def test_the_cli_s_local_commands_wire_users_and_keys_as_the_server_does(
    make_settings: Callable[..., Settings],
) -> None:
    """The CLI's local commands build the users and keys alone (``build_accounts``, which
    ``build_services`` takes its own from), wired alike: a project-bound key asks projects,
    a user disabled is forgotten by the keys of the same process."""
    settings = make_settings()
    engine = create_engine(settings.database_url)
    migrate(engine)
    with open_local(settings.data_dir) as local:
        assert type(local.services) is AccountServices
        assert local.settings.data_dir == settings.data_dir
        local.users.add("admin", role=Role.ADMIN, actor="test")  # on the server's own database
        local.users.add("olga", role=Role.MEMBER, actor="test")
        with pytest.raises(NotFound, match="no such project"):  # projects' query, passed in
            local.keys.create(local.principal("admin"), name="p", scope=Scope.READ, project_id=7)
        token = local.keys.create(local.principal("olga"), name="k", scope=Scope.READ)[1]
        assert local.keys.principal(token, "cli").username == "olga"
        assert local.keys.remembered(token, "cli") is not None
        local.users.set_active("olga", False, actor="test")
        assert local.keys.remembered(token, "cli") is None  # looked up again: refused
    services = build_services(settings, engine)
    assert services.auth_context.keys is services.keys
    with open_local(settings.data_dir) as again:
        assert [user.username for user in again.users.list_all()] == ["admin", "olga"]
    engine.dispose()


async def test_apps_in_one_process_share_routes_and_keep_their_own_services(
    make_app: Callable[..., FastAPI],
) -> None:
    """The routes are built once per process (api/app.py: _shared_routes) and every app
    includes the same objects; a request still reaches the services of the app it came to."""
    first, second = make_app(), make_app()  # two replicas of one database
    assert {id(route) for route in first.routes} & {id(route) for route in second.routes}
    moments = {}
    for app, year in ((first, 2030), (second, 2031)):
        moments[year] = datetime(year, 1, 2, 3, 4, 5, tzinfo=UTC)
        services_of(app).runs.clock = lambda moment=moments[year]: moment
    token = _admin_key(services_of(first))
    async with _client(first, token) as one, _client(second, token) as two:
        assert (await one.post("/api/v1/projects", json={"name": "p"})).status_code == 201
        for client, year in ((one, 2030), (two, 2031), (one, 2030)):
            made = await client.post("/api/v1/projects/p/runs", json={})
            assert made.status_code == 201
            assert datetime.fromisoformat(made.json()["created_at"]) == moments[year]
    for app in (first, second):
        services_of(app).metrics.rollups.stop()
        services_of(app).engine.dispose()


def test_every_api_operation_documents_the_error_body(make_app: Callable[..., FastAPI]) -> None:
    make_app()  # the shared routes are built by the first app; the second reuses them
    document = make_app().openapi()
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    ]
    assert len(operations) > 50
    for path, method, operation in operations:
        refused = operation["responses"].get("401") or operation["responses"].get("403")
        assert refused is not None, (method, path)
        schema = refused["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
