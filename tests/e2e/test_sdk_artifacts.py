"""Artifacts from a real training script against a real server: ``run.log_artifact`` and
``run.log_image`` (array and file) come back byte-identical through
``safeboard.download_artifact``, the images as PNGs that decode to the logged pixels; an
offline run keeps them in its spool and says so, and ``safeboard sync`` delivers them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_sdk import discovery_key, sdk_env, server_gone_away
from tests.unit.test_png import decode_png

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]

TRAIN = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import safeboard

    run = safeboard.init(project="vision", name="with-files")
    for step in range(200):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    started = time.perf_counter()
    run.log_artifact(sys.argv[1], name="weights.pt", kind="model")
    gradient = np.linspace(0.0, 1.0, 48 * 64 * 3).reshape(48, 64, 3)
    run.log_image(gradient, step=7)
    pixels = (np.arange(32 * 16) % 256).astype(np.uint8).reshape(32, 16)
    run.log_image(pixels, name="gray.png")
    pixels[:] = 0  # reused by the training loop: the logged copy must not change
    run.log_image(sys.argv[2])
    took = time.perf_counter() - started
    run.finish()
    print(run.id)
    print(f"{took:.6f}", file=sys.stderr)
    """
)

DOWNLOAD = textwrap.dedent(
    """
    import sys
    import safeboard

    for artifact_id in sys.argv[2:]:
        print(safeboard.download_artifact(artifact_id, sys.argv[1]))
    """
)


def python(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True,
        timeout=180, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(3_000_000))
    image = tmp_path / "chart.png"
    from safeboard.sdk.images import encode_png, pixels_of

    image.write_bytes(encode_png(pixels_of(np.full((5, 7, 4), 200, dtype=np.uint8))))
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return script, weights, image


def artifacts_of(server: ServerProcess, run_id: str) -> dict[str, dict[str, object]]:
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with server.client() as client:
        items = client.get(f"/api/v1/runs/{run_id}/artifacts", headers=headers).json()["items"]
    return {str(item["name"]): item for item in items}


def check_delivered(
    server: ServerProcess, run_id: str, weights: Path, image: Path, tmp_path: Path
) -> None:
    found = artifacts_of(server, run_id)
    assert set(found) == {"weights.pt", "image-7.png", "gray.png", "chart.png"}
    assert all(item["state"] == "ready" for item in found.values())
    assert found["weights.pt"]["kind"] == "model"
    assert found["image-7.png"]["kind"] == found["gray.png"]["kind"] == "image"
    assert found["image-7.png"]["step"] == 7
    assert found["gray.png"]["step"] == 199  # the last step logged
    assert found["image-7.png"]["content_type"] == "image/png"  # proven PNG by the server

    out = tmp_path / "downloads"
    out.mkdir()
    script = tmp_path / "download.py"
    script.write_text(DOWNLOAD)
    names = ("weights.pt", "image-7.png", "gray.png", "chart.png")
    ids = [str(found[name]["id"]) for name in names]
    got = python(script, str(out), *ids, env=sdk_env(server, tmp_path))
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [str(out / name) for name in names]
    assert (out / "weights.pt").read_bytes() == weights.read_bytes()
    assert (out / "chart.png").read_bytes() == image.read_bytes()
    gradient = np.linspace(0.0, 1.0, 48 * 64 * 3).reshape(48, 64, 3)
    decoded = decode_png((out / "image-7.png").read_bytes())
    assert decoded.shape == (48, 64, 3)
    assert np.abs(decoded.astype(int) - np.rint(gradient * 255)).max() <= 1
    gray = decode_png((out / "gray.png").read_bytes())
    assert np.array_equal(gray[:, :, 0], (np.arange(32 * 16) % 256).reshape(32, 16))
    for name in ("weights.pt", "gray.png"):
        sha = hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert sha == found[name]["sha256"]


def test_log_artifact_and_images_round_trip(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory("--tls")
    script, weights, image = inputs(tmp_path)
    result = python(script, str(weights), str(image), env=sdk_env(server, tmp_path))
    assert result.returncode == 0, result.stderr
    assert float(result.stderr.strip().splitlines()[-1]) < 0.5  # the calls return at once
    run_id = result.stdout.strip()
    assert not any((tmp_path / "spool").iterdir())  # all delivered: nothing left behind
    check_delivered(server, run_id, weights, image, tmp_path)
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with server.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
    assert run["status"] == "finished"
    assert {m["key"]: m["count"] for m in run["metrics"]} == {"loss": 200}


def test_offline_run_with_artifacts_then_sync(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    script, weights, image = inputs(tmp_path)
    offline = sdk_env(server, tmp_path, SAFEBOARD_MODE="offline")
    result = python(script, str(weights), str(image), env=offline)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    assert "200 points and 4 artifacts" in result.stderr  # it says what is left
    assert "safeboard sync" in result.stderr
    spool = tmp_path / "spool" / run_id
    assert len(list(spool.glob("artifact-*.json"))) == 4
    assert len(list(spool.glob("image-*.png"))) == 2  # arrays kept as PNGs
    record = json.loads(sorted(spool.glob("artifact-*.json"))[0].read_text())
    assert record["name"] == "weights.pt"
    assert oct(spool.stat().st_mode & 0o777) == "0o700"

    synced = subprocess.run(
        [sys.executable, "-m", "safeboard", "sync"], env=sdk_env(server, tmp_path),
        capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    assert "200 points and 4 artifacts sent, done" in synced.stdout
    assert not spool.exists()
    check_delivered(server, run_id, weights, image, tmp_path)


AWAY = textwrap.dedent(
    """
    import sys, time
    import safeboard

    run = safeboard.init(project="vision", name="server-away")
    run.log_artifact(sys.argv[1], kind="dataset")
    for step in range(300):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        time.sleep(0.01)
    run.finish()
    print(run.id)
    """
)


def test_artifact_waits_for_a_server_that_is_away(server_factory: Start, tmp_path: Path) -> None:
    port, env = server_gone_away(server_factory, tmp_path)
    key = env["SAFEBOARD_API_KEY"]
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(2_000_000))
    script = tmp_path / "away.py"
    script.write_text(AWAY)
    training = subprocess.Popen(
        [sys.executable, str(script), str(data)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)  # nobody listening: the artifact waits in the spool, training goes on
    assert training.poll() is None
    second = server_factory(name="srv", port=port)
    out, err = training.communicate(timeout=120)
    assert training.returncode == 0, err
    assert "not delivered" not in err
    headers = {"Authorization": f"Bearer {key}"}
    with second.client() as client:
        run_id = out.strip()
        items = client.get(f"/api/v1/runs/{run_id}/artifacts", headers=headers).json()["items"]
        (item,) = items
        assert (item["name"], item["kind"], item["state"]) == ("data.bin", "dataset", "ready")
        body = client.get(f"/api/v1/artifacts/{item['id']}/content", headers=headers)
        assert body.content == data.read_bytes()
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
    assert run["status"] == "finished"
    assert not (tmp_path / "spool" / run_id).exists()
