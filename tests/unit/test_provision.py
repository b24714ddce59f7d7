"""safeboard.provision: a route receives a service by its type, from the app's one
services object; a route asking for a type the app does not hold is refused when the app
is put together, never at request time (issue 12, section 2)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from safeboard.provision import NotProvided, install, provided, provided_by

T = TypeVar("T")
SRC = Path(__file__).resolve().parents[2] / "src" / "safeboard"


class Counter:
    def __init__(self) -> None:
        self.calls = 0


class Ledger:
    """A type nobody provides."""


class Held:
    """A provider over a few instances (the app's is safeboard.services.Services)."""

    def __init__(self, *instances: object) -> None:
        self.instances = {type(instance): instance for instance in instances}

    def provides(self, kind: type[Any]) -> bool:
        return kind in self.instances

    def get(self, kind: type[T]) -> T:
        found: T = self.instances[kind]  # type: ignore[assignment]
        return found


def test_a_route_receives_the_app_s_instance_by_its_type() -> None:
    counter = Counter()
    app = FastAPI()

    @app.get("/count")
    def count(counted: Counter = provided(Counter)) -> int:
        counted.calls += 1
        return counted.calls

    install(app, Held(counter))

    async def twice() -> list[object]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get("/count")).json() for _ in range(2)]

    assert anyio.run(twice) == [1, 2]
    assert counter.calls == 2
    assert provided_by(app, Counter) is counter


def test_a_route_asking_for_an_unprovided_type_is_refused_when_the_app_is_built() -> None:
    app = FastAPI()

    @app.get("/fine")
    def fine(counted: Counter = provided(Counter)) -> int:
        return counted.calls

    @app.post("/books")
    def books(ledger: Ledger = provided(Ledger)) -> None:
        del ledger

    with pytest.raises(NotProvided) as refused:
        install(app, Held(Counter()))
    message = str(refused.value)
    assert f"POST /books asks for {__name__}.Ledger" in message
    assert "/fine" not in message
    assert "safeboard.services.Services" in message  # where to add it


def test_needs_are_found_in_dependencies_of_dependencies_and_included_routers() -> None:
    def who(ledger: Ledger = provided(Ledger)) -> str:
        return type(ledger).__name__

    router = APIRouter(prefix="/api", dependencies=[Depends(who)])

    @router.get("/deep")
    def deep() -> None: ...

    app = FastAPI()
    app.include_router(router)
    with pytest.raises(NotProvided, match="GET /api/deep asks for"):
        install(app, Held(Counter()))
    install(app, Held(Counter(), Ledger()))  # once provided, accepted


def test_an_app_without_services_says_so() -> None:
    with pytest.raises(NotProvided, match="not given its services"):
        provided_by(FastAPI(), Counter)


def test_one_dependency_per_type() -> None:
    """FastAPI solves a dependency once per request when it is the same callable."""
    assert provided(Counter).dependency is provided(Counter).dependency
    assert provided(Counter).dependency is not provided(Ledger).dependency


def test_no_code_but_provision_reads_the_app_s_state() -> None:
    """Services reach routes by type only: no ``app.state.<service>`` anywhere else."""
    readers = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "provision.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bapp\.state\b", line)
    ]
    assert readers == []
