"""Schemathesis over the whole published OpenAPI document, in process (S17): no input
yields a 5xx and every response conforms to the schema. Grows with every route added."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from safeboard.api.app import create_app
from safeboard.datadir import ensure_data_dir
from safeboard.secret_store import ensure_secrets
from safeboard.settings import load_settings
from safeboard.storage import create_engine, upgrade

# schemathesis needs the app when the module is collected (its fixture-based loader breaks
# on pytest 9.2), so the data directory is made here and removed when the run ends.
_DATA = tempfile.TemporaryDirectory(prefix="safeboard-fuzz-")


def _app() -> FastAPI:
    data_dir = ensure_data_dir(Path(_DATA.name) / "data")
    ensure_secrets(data_dir)
    # schemathesis calls the app as "testserver"; the Host check must know that name.
    app_settings = load_settings(data_dir, server={"allowed_hosts": ["testserver"]})
    engine = create_engine(app_settings.database_url)
    upgrade(engine)
    return create_app(app_settings, engine=engine)


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_api(case: schemathesis.Case) -> None:
    case.call_and_validate()
