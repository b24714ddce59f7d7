"""The dashboard pages that the SDK and the CLI link to are built in client.paths, like the
API's paths, and match the routes the web app serves."""

from __future__ import annotations

from safeboard.client import paths
from safeboard.sdk.notices import run_url
from safeboard.web.routes import router


def test_every_path_builder_is_exported() -> None:
    public = {name for name, value in vars(paths).items() if callable(value)}
    public -= {"quote", "annotations"}
    assert public <= set(paths.__all__)
    assert {"session", "sign_in", "sign_out", "run_page", "invite_page"} <= set(paths.__all__)


def test_the_pages_are_routes_of_the_web_app() -> None:
    served = {getattr(route, "path", "") for route in router.routes}
    assert "/runs/{run_id}" in served
    assert "/invite" in served
    assert paths.run_page("ab12") == "/runs/ab12"
    assert paths.invite_page("tok-_9") == "/invite#token=tok-_9"


def test_the_sdk_links_the_run_page() -> None:
    assert run_url("https://sb.example/", "ab12") == "https://sb.example/runs/ab12"
    assert run_url("https://sb.example/ml", "a/b") == "https://sb.example/ml/runs/a%2Fb"
