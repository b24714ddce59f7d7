"""Imported TensorBoard histograms reach the run's histograms per step (issue 17), as
well as the importer's JSON Lines artifact; an import run again stores nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeboard.client import Client
from safeboard.sdk.tbimport import import_tensorboard
from tests.e2e.test_tensorboard_import import client, server
from tests.support.eventfiles import tensorboard_tf2_run, tensorboardx_run

__all__ = ["client", "server"]  # the fixtures, shared with test_tensorboard_import

pytestmark = pytest.mark.e2e


def test_imported_histograms_are_the_runs_histograms_once(client: Client, tmp_path: Path) -> None:
    logdir = tmp_path / "h"
    tensorboard_tf2_run(logdir)
    for _ in range(2):
        (done,) = import_tensorboard(client, logdir, "tbsteps")
    run = done.run_id
    assert client.api.get(f"/api/v1/runs/{run}/steps").json()["histograms"] == {"weights": 1}
    one = client.api.get(f"/api/v1/runs/{run}/histogram", params={"histogram": "weights"})
    # limits (right edges) [1, 2] from min 0: the buckets [0, 1] and [1, 2]
    assert one.json() | {"time": 0.0} == {
        "key": "weights",
        "step": 2,
        "time": 0.0,
        "edges": [0.0, 1.0, 2.0],
        "counts": [3.0, 5.0],
    }
    assert [a.name for a in client.artifacts(run) if a.name.startswith("histograms/")]


def test_tensorboardx_histograms_with_an_open_end(client: Client, tmp_path: Path) -> None:
    tensorboardx_run(tmp_path / "x")
    runs = import_tensorboard(client, tmp_path / "x", "tbxsteps")
    found: dict[str, int] = {}
    for done in runs:
        found |= client.api.get(f"/api/v1/runs/{done.run_id}/steps").json()["histograms"]
    hist_rows = sum(done.counts.histograms for done in runs)
    assert hist_rows >= 1
    assert sum(found.values()) == hist_rows
