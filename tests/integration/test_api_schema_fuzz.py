"""Schemathesis over the whole published OpenAPI document, in process (S17): no input
yields a 5xx and every response conforms to the schema. Grows with every route added."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from safeboard import wire
from safeboard.api.app import create_app
from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.secret_store import ensure_secrets
from safeboard.settings import load_settings
from safeboard.storage import create_engine, upgrade
from safeboard.users.service import UserService
from tests.integration.identity_world import FAST_ARGON2

# schemathesis needs the app when the module is collected (its fixture-based loader breaks
# on pytest 9.2), so the data directory is made here and removed when the run ends.
_DATA = tempfile.TemporaryDirectory(prefix="safeboard-fuzz-")


def _app() -> tuple[FastAPI, dict[str, str]]:
    """The app, and headers with an admin's API key (every route is reachable)."""
    data_dir = ensure_data_dir(Path(_DATA.name) / "data")
    ensure_secrets(data_dir)
    # schemathesis calls the app as "testserver"; the Host check must know that name.
    app_settings = load_settings(
        data_dir, server={"allowed_hosts": ["testserver"]}, auth=FAST_ARGON2
    )
    engine = create_engine(app_settings.database_url)
    upgrade(engine)
    app = create_app(app_settings, engine=engine)
    users: UserService = app.state.users
    admin = users.add("admin", role=Role.ADMIN, actor="test")
    users.add("member", role=Role.MEMBER, actor="test")
    owner = Principal(admin.id, admin.username, admin.role, CredentialKind.SESSION, Scope.ADMIN)
    _, token = app.state.auth_context.keys.create(owner, name="fuzz", scope=Scope.ADMIN)
    return app, {"Authorization": f"Bearer {token}"}


APP, AUTH = _app()

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
# Event streams never end by design; tests/e2e/test_live_events.py covers them.
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP, headers=AUTH).exclude(
    path_regex=r"/events$"
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_api(case: schemathesis.Case) -> None:
    # Every check but "schema-valid data is accepted": business rules (an unknown project,
    # an existing user name, the last admin) rightly refuse some schema-valid requests.
    case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])
