"""In-process application fixtures: a real data directory, real SQLite, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from safeboard.api.app import create_app
from safeboard.datadir import ensure_data_dir
from safeboard.secret_store import ensure_secrets
from safeboard.services import services_of
from safeboard.settings import Settings, load_settings
from safeboard.storage import create_engine
from tests.support.hashing import FAST_ARGON2
from tests.support.schema import migrate


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        directory = ensure_data_dir(tmp_path / "data")
        ensure_secrets(directory)
        # The test tiers hash at OWASP's minimum cost unless a test asks for another.
        auth = {**FAST_ARGON2, **overrides.pop("auth", {})}
        return load_settings(directory, auth=auth, **overrides)

    return make


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Callable[..., FastAPI]:
    def make(settings: Settings | None = None, **overrides: Any) -> FastAPI:
        settings = settings or make_settings(**overrides)
        engine = create_engine(settings.database_url)
        migrate(engine)
        return create_app(settings, engine=engine)

    return make


@pytest.fixture
async def client(make_app: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
        yield c
    services_of(app).metrics.rollups.stop()  # as the app's shutdown does
    services_of(app).engine.dispose()
