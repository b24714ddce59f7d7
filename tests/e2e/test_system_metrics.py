"""System metrics end to end: a real training script against a real server sends system/
keys (on by default), numbered by sample, beside its exact training metrics; none when
turned off by argument or environment. In headless Chromium, the run page draws them in
their own System metrics section (also when the first arrives while the page is open),
and the compare view keeps them apart and unticked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_sdk import discovery_key, sdk_env

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
STEPS = 40

TRAIN = textwrap.dedent(
    """
    import sys, time
    import safeboard

    switch = {"on": None, "off": False}[sys.argv[1]]
    run = safeboard.init(project="sys", name=sys.argv[2], system_metrics=switch,
                         flush_interval=0.2)
    for step in range(40):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        time.sleep(0.05)
    run.finish()
    print(run.id)
    """
)


def train(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True,
        timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not delivered" not in done.stderr, done.stderr
    return done.stdout.strip().splitlines()[-1]


def metrics_of(client: httpx.Client, run_id: str) -> dict[str, int]:
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished", run
    return {m["key"]: m["count"] for m in run["metrics"]}


def on_env(server: ServerProcess, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The SDK's environment with system metrics as a user has them: on (the test tier
    turns them off for the scripts that count their metrics exactly)."""
    env = sdk_env(server, tmp_path, SAFEBOARD_SYSTEM_METRICS_INTERVAL="0.25")
    env.pop("SAFEBOARD_SYSTEM_METRICS")
    env.update(extra)
    return env


def test_a_training_script_sends_system_metrics_unless_turned_off(
    server_factory: Start, tmp_path: Path
) -> None:
    server = server_factory()
    started = time.time()
    on = train(tmp_path, on_env(server, tmp_path), "on", "with")
    by_argument = train(tmp_path, on_env(server, tmp_path), "off", "argument")
    by_env = train(tmp_path, on_env(server, tmp_path, SAFEBOARD_SYSTEM_METRICS="0"), "on", "env")
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        counts = metrics_of(client, on)
        assert counts.pop("loss") == STEPS  # the training metrics, exactly as logged
        samples = counts["system/cpu_percent"]
        assert samples >= 3, counts  # 2 s of training, a sample every 0.25 s
        for key in ("system/process/cpu_percent", "system/process/rss_mib",
                    "system/memory/used_mib", "system/disk/used_percent"):  # fmt: skip
            assert counts[key] == samples, counts
        assert all(key.startswith("system/") for key in counts)
        points: dict[str, Any] = client.get(
            f"/api/v1/runs/{on}/points", params={"metric": "system/process/rss_mib"}
        ).json()
        assert points["steps"] == list(range(samples))  # a step per sample, in order
        assert points["times"] == sorted(points["times"])
        assert started - 1 < points["times"][0] <= points["times"][-1] < time.time() + 1
        assert all(v > 1 for v in points["values"])  # MiB of a Python process
        assert metrics_of(client, by_argument) == {"loss": STEPS}
        assert metrics_of(client, by_env) == {"loss": STEPS}


def _batch(points: dict[str, list[float]]) -> dict[str, Any]:
    now = time.time()
    return {
        key: {"steps": list(range(len(values))), "times": [now + i for i in range(len(values))],
              "values": values}
        for key, values in points.items()
    }  # fmt: skip


def _sign_in(page: Page, server: ServerProcess) -> None:
    _, link = startup_link(server)
    page.goto(link)
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)


def test_run_page_and_compare_view_keep_system_metrics_apart(server_factory: Start) -> None:
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "sys"}).status_code == 201
        runs = [client.post("/api/v1/projects/sys/runs", json={"name": n}).json()
                for n in ("first", "second", "later")]  # fmt: skip
        for number, run in enumerate(runs):
            metrics = {"loss": [1.0, 0.5, 0.25]}
            if run["name"] != "later":
                metrics |= {"system/cpu_percent": [10.0, 50.0, 90.0],
                            "system/gpu0/memory_used_mib": [100.0, 200.0, 150.0]}  # fmt: skip
            batch = {"batch_id": f"batch-{number}-{run['id'][:8]}", "metrics": _batch(metrics)}
            sent = client.post(f"/api/v1/runs/{run['id']}/metrics", json=batch)
            assert sent.status_code == 200, sent.text
        first, second, later = (run["id"] for run in runs)

        with chromium() as browser:
            page, watch = browser.new_page()
            _sign_in(page, server)
            page.goto(f"{server.url}/runs/{first}")
            expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
            expect(page.locator("#charts figure h3")).to_have_text(["loss"])
            section = page.locator("#system-metrics")
            expect(section).to_be_visible()
            expect(section.locator("h2")).to_have_text("System metrics")
            charts = page.get_by_test_id("system-chart")
            expect(charts.locator("h3")).to_have_text(
                ["system/cpu_percent", "system/gpu0/memory_used_mib"]
            )
            expect(charts.first.locator("canvas")).to_have_count(1)  # drawn by uPlot
            assert charts.first.get_attribute("data-points") == "3"

            # The first system metric of a run whose page is open: the section appears.
            page.goto(f"{server.url}/runs/{later}")
            expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
            expect(page.locator("#system-metrics")).to_be_hidden()
            sent = client.post(
                f"/api/v1/runs/{later}/metrics",
                json={"batch_id": "batch-live", "metrics": _batch({"system/cpu_percent": [5.0]})},
            )
            assert sent.status_code == 200, sent.text
            expect(page.locator("#system-metrics")).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("system-chart").locator("h3")).to_have_text(
                ["system/cpu_percent"]
            )
            expect(page.locator("#charts figure h3")).to_have_text(["loss"])

            page.goto(f"{server.url}/compare?run={first}&run={second}")
            expect(page.locator("#charts")).to_have_attribute("data-ready", "true")
            expect(page.locator("#charts figure h3")).to_have_text(["loss"])
            system = page.locator("#system-picker input")
            expect(system).to_have_count(2)
            for box in system.all():
                expect(box).not_to_be_checked()
            page.get_by_label("system/cpu_percent").check()
            expect(page.locator("#system-charts figure h3")).to_have_text(["system/cpu_percent"])
            expect(page.locator("#charts figure h3")).to_have_text(["loss"])
            watch.assert_clean()
