"""A small world for identity tests: the real app on a real database (SQLite or
PostgreSQL), with accounts, keys and signed-in clients made through the real services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from safeboard.accounts.context import AuthContext
from safeboard.accounts.users import UserService
from safeboard.api.app import create_app
from safeboard.auth.permissions import Role, Scope
from safeboard.services import Services, services_of
from safeboard.settings import Settings
from safeboard.storage import create_engine
from tests.support.hashing import FAST_ARGON2
from tests.support.schema import migrate
from tests.support.sessions import bind

PASSWORD = "correct horse battery staple 42"


@dataclass
class World:
    app: FastAPI
    settings: Settings
    base_url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def services(self) -> Services:
        """The app's services: the very objects its routes use."""
        return services_of(self.app)

    @property
    def users(self) -> UserService:
        return self.services.users

    @property
    def context(self) -> AuthContext:
        return self.services.auth_context

    def client(self, address: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 50000))
        client = httpx.AsyncClient(transport=transport, base_url=self.base_url, headers=headers)
        self.clients.append(client)
        return client

    def user(self, name: str, role: Role = Role.MEMBER, password: str | None = PASSWORD) -> None:
        self.users.add(name, role=role, actor="test")
        if password is not None:
            self.users.set_password(name, password, actor="test")

    def key(self, name: str, scope: Scope = Scope.ADMIN, **kwargs: Any) -> str:
        from safeboard.cli.local import Local

        local = Local(self.services)
        _, token = self.context.keys.create(
            local.principal(name), name="test", scope=scope, **kwargs
        )
        return token

    def agent(self, pool: str = "gpu", admin: str = "admin") -> str:
        """An enrolled agent's credential (``sb_agent_...``), through the real service."""
        from safeboard.cli.local import Local

        agents = self.services.agents
        made = agents.create_join_token(
            Local(self.services).principal(admin), pool=pool, labels=[], ttl=None,
            url=self.base_url,
        )  # fmt: skip
        _, credential = agents.enroll(
            made.join_string, hostname="gpu-1", version="test", labels=[], address="127.0.0.1"
        )
        return credential

    async def signed_in(self, name: str, password: str = PASSWORD) -> tuple[httpx.AsyncClient, str]:
        """A client with a session cookie for ``name`` and its binding (as the dashboard's
        service worker sends it), and its CSRF token."""
        client = self.client()
        response = await client.post(
            "/api/v1/auth/login", json={"username": name, "password": password}
        )
        bind(client, response)
        return client, response.json()["csrf_token"]

    def unsafe(self, csrf: str) -> dict[str, str]:
        """Headers a same-origin browser page sends with a state-changing request."""
        return {"X-CSRF-Token": csrf, "Origin": self.base_url}

    def set_clock(self, now: Callable[[], datetime]) -> None:
        self.context.auth.clock = now
        self.context.keys.clock = now

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        self.services.streams.stop()  # as the app's shutdown does: no check mid-dispose
        self.services.metrics.rollups.stop()
        self.services.engine.dispose()


def build_world(make_settings: Callable[..., Settings], db_url: str, **overrides: Any) -> World:
    auth = {**FAST_ARGON2, **overrides.pop("auth", {})}
    database = {"url": db_url, **overrides.pop("database", {})}
    settings = make_settings(database=database, auth=auth, **overrides)
    engine = create_engine(
        settings.database_url, busy_timeout_ms=settings.database.sqlite_busy_timeout_ms
    )
    migrate(engine)
    app = create_app(settings, engine=engine)
    scheme = "https" if settings.tls_on else "http"
    return World(app, settings, f"{scheme}://127.0.0.1:{settings.port}")
