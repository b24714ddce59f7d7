"""``safeboard import tensorboard`` waits out a busy server (503 ``database_busy`` with
Retry-After) and imports everything once: metric batches, images, the histograms per step
and the copies of the event files each meet a 503 first. A gate in front of a real TLS
server answers those (tests/support/busy_gate.py); an SQLite writer locked past its wait
answers the same. On the previous code the histograms and the images were sent once:
the import failed with "the database is busy", and the copy of the event files went on
in a thread after the command had closed its client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.support.busy_gate import BusyGate
from tests.support.eventfiles import tensorboard_tf2_run

pytestmark = pytest.mark.e2e

KINDS = ("/metrics", "/steps", "/artifacts")  # batches, histograms, artifact declarations


class FirstOfEachKind:
    """Refuses the first POST of each kind: every kind must be sent again."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, path: str) -> bool:
        kind = next((k for k in KINDS if path.endswith(k)), None)
        with self.lock:
            if kind is None or kind in self.seen:
                return False
            self.seen.add(kind)
            return True


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[BusyGate, ServerProcess]]:
    server = start_server(tmp_path, "--tls", name="tls")
    proxy = BusyGate(server.data_dir / "tls", server.client(), FirstOfEachKind(), retry_after=1)
    try:
        yield proxy, server
    finally:
        proxy.close()
        server.stop()


@pytest.fixture
def older(tmp_path: Path) -> Iterator[tuple[BusyGate, ServerProcess]]:
    """A server from before compact metric bodies: 415 to each (and nothing busy)."""
    server = start_server(tmp_path, "--tls", name="tls")
    proxy = BusyGate(server.data_dir / "tls", server.client(), lambda _: False, older=True)
    try:
        yield proxy, server
    finally:
        proxy.close()
        server.stop()


def _import_through(
    proxy: BusyGate, server: ServerProcess, tmp_path: Path, steps: int
) -> tuple[str, str]:
    """Import a TF2 run of ``steps`` steps through ``proxy``; the new run's id, the key."""
    made = run_cli("key", "create", "--name", "w", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    logdir = tmp_path / "logs"
    tensorboard_tf2_run(logdir / "run1", steps=steps)
    env = cli_env(tmp_path / "nowhere")
    env.update(
        SAFEBOARD_URL=proxy.url, SAFEBOARD_API_KEY=made.stdout.strip(),
        SAFEBOARD_CA_CERT=str(server.ca_path), SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        SAFEBOARD_CONFIG_DIR=str(tmp_path / "cfg"),
    )  # fmt: skip
    done = run_cli("import", "tensorboard", str(logdir), "-p", "p", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{2 * steps} points" in done.stdout, done.stdout
    return done.stdout.split("(")[1].split(")")[0], made.stdout.strip()


def _stored(
    server: ServerProcess, run_id: str, key: str
) -> dict[str, tuple[list[int], list[float]]]:
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        run = client.get(f"/api/v1/runs/{run_id}").json()
        out = {}
        for metric in run["metrics"]:
            key = metric["key"]
            points = client.get(f"/api/v1/runs/{run_id}/points", params={"metric": key}).json()
            out[key] = (points["steps"], points["values"])
    return out


@pytest.mark.parametrize("older_server", [False, True])
def test_metric_bodies_are_compact_and_plain_for_a_server_from_before(
    older_server: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """40 steps a tag: steps of one stride and float32 values go compact (SBC2), 12 bytes a
    point; a server from before answers 415 once, and gets the same batches plain."""
    proxy, server = request.getfixturevalue("older" if older_server else "gate")
    run_id, key = _import_through(proxy, server, tmp_path, steps=40)
    metrics = [(m, s) for p, m, s in proxy.media_types if p.endswith("/metrics")]
    compact = "application/vnd.safeboard.columns.v2"
    if older_server:  # one refused compact body, then plain ones only
        assert metrics[0] == (compact, 415), metrics
        assert {m for m, _ in metrics[1:]} == {"application/vnd.safeboard.columns"}, metrics
    else:
        assert {m for m, _ in metrics} == {compact}, metrics
    stored = _stored(server, run_id, key)
    assert stored["acc"][0] == list(range(40))
    assert stored["acc"][1] == [0.5 + i for i in range(40)]
    assert stored["loss/double"] == (list(range(40)), [2.0 * i for i in range(40)])


def test_an_import_waits_out_a_busy_server_and_stores_everything_once(
    gate: tuple[BusyGate, ServerProcess], tmp_path: Path
) -> None:
    proxy, server = gate
    made = run_cli("key", "create", "--name", "w", "--scope", "write", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    logdir = tmp_path / "logs"
    tensorboard_tf2_run(logdir / "run1")
    env = cli_env(tmp_path / "nowhere")
    env.update(
        SAFEBOARD_URL=proxy.url, SAFEBOARD_API_KEY=key, SAFEBOARD_CA_CERT=str(server.ca_path),
        SAFEBOARD_SPOOL_DIR=str(tmp_path / "spool"), SAFEBOARD_CONFIG_DIR=str(tmp_path / "cfg"),
    )  # fmt: skip
    done = run_cli("import", "tensorboard", str(logdir), "-p", "busy", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "not kept" not in done.stderr, done.stderr  # the copies went through too
    refused = sorted(path for _, path, status in proxy.posts if status == 503)
    assert [next(k for k in KINDS if p.endswith(k)) for p in refused] == sorted(KINDS)
    assert "6 points, 1 image, 1 text, 1 histogram, 1 hparams record" in done.stdout, done.stdout
    run_id = done.stdout.split("(")[1].split(")")[0]
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        run = client.get(f"/api/v1/runs/{run_id}").json()
        assert {m["key"]: m["count"] for m in run["metrics"]} == {"acc": 3, "loss/double": 3}
        steps = client.get(f"/api/v1/runs/{run_id}/steps").json()
        assert steps["histograms"] == {"weights": 1}
        artifacts = client.get(f"/api/v1/runs/{run_id}/artifacts").json()["items"]
    kinds = sorted(a["kind"] for a in artifacts if a["state"] == "ready")
    assert kinds == ["file", "image", "table"], artifacts  # event file, image, histograms
