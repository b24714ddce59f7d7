"""A real safeboard server for the framework tests, and what reached it.

The tests train tiny real models in this process (torch is imported once); the SDK finds
the server the way a training script does, through the discovery file of its data
directory (``safeboard server`` writes it), with a spool of the test's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, start_server
from tests.e2e.test_sdk import discovery_key

pytestmark = pytest.mark.e2e

# No download from the Hugging Face Hub, ever: the models are built from configs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# The frameworks' own advice (more dataloader workers, a GPU) and their deprecations of one
# another (Lightning on torch's pytree, raised through typing_extensions): not what these
# tests are about. safeboard's own RuntimeWarnings and UserWarnings stay errors.
FRAMEWORK_WARNINGS = [
    "ignore::UserWarning:lightning",
    "ignore::UserWarning:pytorch_lightning",
    "ignore::UserWarning:lightning_fabric",
    "ignore::UserWarning:torch",
    "ignore::UserWarning:transformers",
    "ignore::UserWarning:accelerate",
    "ignore::FutureWarning",
    "ignore::DeprecationWarning",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            for rule in FRAMEWORK_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(rule))


@dataclass
class Seen:
    """What the server holds, through its API."""

    server: ServerProcess

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {discovery_key(self.server)}"}
        with self.server.client() as client:
            answer = client.get(f"/api/v1{path}", headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/runs/{run_id}"))

    def counts(self, run_id: str) -> dict[str, int]:
        return {m["key"]: m["count"] for m in self.run(run_id)["metrics"]}

    def points(self, run_id: str, metric: str) -> tuple[list[int], list[Any]]:
        body = self.get(f"/runs/{run_id}/points?metric={metric}")
        return list(body["steps"]), list(body["values"])

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/runs/{run_id}/artifacts")["items"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("server"))
    yield started
    started.stop()


@pytest.fixture
def seen(server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seen:
    """The SDK in this process pointed at ``server`` (as sdk_env does for a script)."""
    for name in [n for n in os.environ if n.startswith("SAFEBOARD")]:
        monkeypatch.delenv(name)
    for name, value in cli_env(server.data_dir).items():
        if name.startswith("SAFEBOARD"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SAFEBOARD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAFEBOARD_QUIET", "1")
    monkeypatch.chdir(tmp_path)
    return Seen(server)
