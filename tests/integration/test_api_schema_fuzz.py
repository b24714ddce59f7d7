"""Schemathesis over the whole published OpenAPI document, in process (S17): no input
yields a 5xx and every response conforms to the schema, on SQLite and on PostgreSQL (which
refuses NUL in text, lone surrogates and integers past its column types where SQLite
shrugs). Grows with every route added."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from safeboard import wire
from safeboard.accounts.users import UserService
from safeboard.api.app import create_app
from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.jobs.spec import TaskSpec
from safeboard.secret_store import ensure_secrets
from safeboard.services import services_of
from safeboard.settings import load_settings
from safeboard.storage import create_engine
from tests.conftest import PostgresServer, fresh_database
from tests.support.hashing import FAST_ARGON2
from tests.support.schema import migrate
from tests.support.scratch import scratch_dir

# Made in every target, so that generated requests reach past "no such project" to the
# database: half the cases (chosen by a digest of the generated value, so repeatable) have
# their path parameters replaced with these.
PROJECT = "fuzz"
RUN_ID = "f" * 32
EXISTING = {"project": PROJECT, "name": PROJECT, "run_id": RUN_ID, "username": "member",
            "task_id": 1}  # fmt: skip


@dataclass(frozen=True)
class Target:
    app: FastAPI
    auth: dict[str, str]
    agent: dict[str, str]  # an enrolled agent's credential, for the agent routes

    def headers_for(self, path: str) -> dict[str, str]:
        return self.agent if path.startswith("/api/v1/agent/") else self.auth


def _target(data_dir: Path, database_url: str | None = None) -> Target:
    """The app on a database, and headers with an admin's API key (every route reachable)."""
    data_dir = ensure_data_dir(data_dir)
    ensure_secrets(data_dir)
    # schemathesis calls the app as "testserver"; the Host check must know that name.
    app_settings = load_settings(
        data_dir,
        server={"allowed_hosts": ["testserver"]},
        auth=FAST_ARGON2,
        database={"url": database_url},
        jobs={"max_wait_seconds": 0},  # an agent's lease answers at once: no long-poll
    )
    engine = create_engine(app_settings.database_url)
    migrate(engine)
    app = create_app(app_settings, engine=engine)
    users: UserService = services_of(app).users
    admin = users.add("admin", role=Role.ADMIN, actor="test")
    users.add("member", role=Role.MEMBER, actor="test")
    owner = Principal(admin.id, admin.username, admin.role, CredentialKind.SESSION, Scope.ADMIN)
    _, token = services_of(app).keys.create(owner, name="fuzz", scope=Scope.ADMIN)
    services_of(app).projects.create(owner, PROJECT)
    services_of(app).runs.create(owner, PROJECT, run_id=RUN_ID, name="seed")
    agents = services_of(app).agents
    made = agents.create_join_token(owner, pool="fuzz", labels=[], ttl=None, url="http://x")
    _, agent = agents.enroll(made.join_string, hostname="h", version="v", labels=[], address="a")
    services_of(app).tasks.submit(owner, PROJECT, TaskSpec(["true"]))  # task 1
    return Target(app, {"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {agent}"})


# schemathesis needs an app when the module is collected (its fixture-based loader breaks
# on pytest 9.2): the SQLite one, made here and removed when the session ends
# (tests/support/scratch.py). The document is the same on every database; the PostgreSQL
# app comes from a fixture.
SQLITE = _target(scratch_dir("safeboard-fuzz-") / "data")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    if request.param == "sqlite":
        yield SQLITE
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with fresh_database(server, "fuzz") as url:
        built = _target(tmp_path_factory.mktemp("fuzz-pg") / "data", url)
        yield built
        services_of(built.app).engine.dispose()


# The SDK's packed metric batches: arbitrary bytes, and well-formed bodies with arbitrary
# columns (any steps, times and values, including the ones the server must refuse).
_column = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5).flatmap(
    lambda steps: st.fixed_dictionaries({
        "steps": st.just(steps),
        "times": st.lists(st.floats(), min_size=len(steps), max_size=len(steps)),
        "values": st.lists(st.floats(), min_size=len(steps), max_size=len(steps)),
    })
)  # fmt: skip
_packed = st.builds(
    wire.pack,
    st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.dictionaries(st.text(max_size=20), _column, max_size=3),
)
schemathesis.openapi.media_type(wire.MEDIA_TYPE, st.one_of(st.binary(max_size=200), _packed))
# Compact bodies: strided steps and float32 values (their compact forms), any others, and
# such bodies with one byte changed (a form tag, a count, a length in the header).
_arrays = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.one_of(
            st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n),
            st.builds(lambda a, b: [a + b * i for i in range(n)],
                      st.integers(-5, 2**40), st.integers(0, 2**20)),
        ),
        st.lists(st.floats(), min_size=n, max_size=n),
        st.lists(st.one_of(st.floats(), st.floats(width=32)), min_size=n, max_size=n),
    )
)  # fmt: skip
_compact = st.builds(
    wire.pack_compact,
    st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.dictionaries(st.text(max_size=20), _arrays, max_size=3),
)
_changed = st.tuples(_compact, st.integers(0, 10**6), st.integers(0, 255)).map(
    lambda c: c[0][: c[1] % len(c[0])] + bytes([c[2]]) + c[0][c[1] % len(c[0]) + 1 :]
)
schemathesis.openapi.media_type(
    wire.COMPACT_MEDIA_TYPE, st.one_of(st.binary(max_size=200), _compact, _changed)
)
# Event streams never end by design; tests/e2e/test_live_events.py covers them (an
# agent's event reports, /api/v1/agent/tasks/.../events, are ordinary POSTs: fuzzed).
schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json", SQLITE.app, headers=SQLITE.auth
).exclude(path_regex=r"^/api/v1/(?!agent/).*/events$")


def _digest(value: object) -> int:
    return zlib.crc32(repr(value).encode())


def _reach_existing(case: schemathesis.Case) -> None:
    for name, value in (case.path_parameters or {}).items():
        if name in EXISTING and _digest(value) % 2 == 0:
            case.path_parameters[name] = EXISTING[name]


# Text no database stores. The generator draws NUL seldom and lone surrogates never (it
# writes UTF-8), so a third of the JSON bodies get one appended to their first text value.
_UNSTORABLE = ("\x00", "\ud800", "\udfff")


def _poison(case: schemathesis.Case) -> None:
    digest = _digest(case.body)
    if digest % 3:
        return
    stack = [case.body]
    while stack:
        value = stack.pop()
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, item in items:
            if isinstance(item, str):
                value[key] = item + _UNSTORABLE[digest % len(_UNSTORABLE)]
                return
            stack.append(item)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_api(case: schemathesis.Case, target: Target) -> None:
    _reach_existing(case)
    _poison(case)
    # Every check but "schema-valid data is accepted": business rules (an unknown project,
    # an existing user name, the last admin) rightly refuse some schema-valid requests.
    try:
        case.call_and_validate(
            app=target.app,
            headers=target.headers_for(case.path),
            excluded_checks=[positive_data_acceptance],
        )
    except FailureGroup as group:
        if not all(_text_on_the_wire(case, failure) for failure in group.exceptions):
            raise


_NAMED = re.compile(r"`([^`]+)`")


def _textual(schema: dict[str, object]) -> bool:
    """A parameter whose every value is text (a string, or an array of strings)."""
    options = schema.get("anyOf") or [schema]
    assert isinstance(options, list)
    kinds = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
    return bool(kinds) and all(
        o.get("type") == "string"
        or (o.get("type") == "array" and (o.get("items") or {}).get("type") == "string")  # type: ignore[union-attr]
        for o in kinds
    )


def _text_on_the_wire(case: schemathesis.Case, failure: BaseException) -> bool:
    """Schemathesis's negative data for a query parameter that takes any text (``metric``
    as ``false``, a number or an object) is text again once in a URL: accepting it is no
    defect, and FastAPI refuses what is not text for every other type."""
    if not isinstance(failure, AcceptedNegativeData) or "in query" not in failure.message:
        return False
    component = failure.message.split("Invalid component:", 1)[-1].split("\n", 1)[0]
    names = _NAMED.findall(component)
    declared = {p.get("name"): p.get("schema", {})
                for p in case.operation.definition.raw.get("parameters", [])}  # fmt: skip
    return bool(names) and all(name in declared and _textual(declared[name]) for name in names)
