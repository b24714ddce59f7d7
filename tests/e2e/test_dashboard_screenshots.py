"""Every main page at a laptop's size (1366 x 768): it renders under the CSP, fits the
width (wide tables scroll inside their box), and is photographed.

The screenshots in docs/screenshots/ come from this test:
``SAFEBOARD_SCREENSHOTS=docs/screenshots python3 -m pytest tests/e2e/test_dashboard_screenshots.py``
(without the variable they go to a temporary directory and are checked only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.e2e.test_agent_run import Agent, agents, api, state_of, wait_for
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link

pytestmark = pytest.mark.e2e
__all__ = ["agents"]  # the fixture, shared with test_agent_run (the task pages' shots)

Start = Callable[..., ServerProcess]
WIDTH, HEIGHT = 1366, 768

SEED = textwrap.dedent(
    """
    import math, random
    import safeboard

    random.seed(7)
    for i, (lr, opt) in enumerate([(0.1, "sgd"), (0.03, "sgd"), (0.01, "adam"),
                                   (0.003, "adam"), (0.001, "adamw"), (0.0003, "adamw")]):
        run = safeboard.init(project="cifar10", name=f"resnet18-{opt}-lr{lr}",
                             config={"lr": lr, "optimizer": opt, "batch_size": 128,
                                     "model": {"arch": "resnet18", "dropout": 0.1 * (i % 3)}},
                             tags={"dataset": "cifar10", "stage": "sweep"})
        rate = 300 + 400 * i
        for step in range(3000):
            noise = 1 + 0.15 * (random.random() - 0.5)
            run.log({"train/loss": 2.3 * math.exp(-step / rate) * noise + 0.05,
                     "val/accuracy": 0.93 * (1 - math.exp(-step / (rate * 1.5))),
                     "lr": lr * 0.5 * (1 + math.cos(math.pi * step / 3000))}, step=step)
        if i == 0:
            run.set_notes("Baseline. Warm-up of 500 steps, cosine schedule.")
        run.finish()
    print("seeded")
    """
)


def shots_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("SAFEBOARD_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_main_pages_at_laptop_size(server_factory: Start, tmp_path: Path) -> None:
    server = server_factory()
    env = cli_env(server.data_dir)
    env["SAFEBOARD_SPOOL_DIR"] = str(tmp_path / "spool")
    seeded = subprocess.run(
        [sys.executable, "-c", SEED], env=env, capture_output=True, text=True, timeout=180,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    _, link = startup_link(server)
    out = shots_dir(tmp_path)

    with chromium() as browser:
        page, watch = browser.new_page()
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        expect(page.get_by_role("link", name="cifar10")).to_be_visible(timeout=TIMEOUT_MS)

        def shoot(name: str, path: str, ready: str | None = None) -> None:
            page.goto(f"{server.url}{path}")
            if ready:
                expect(page.locator(ready)).to_have_count(1, timeout=TIMEOUT_MS)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= WIDTH, f"{name} is {overflow}px wide"
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=False)
            assert target.stat().st_size > 10_000, name

        shoot("projects", "/")
        shoot("runs-table", "/projects/cifar10?sort=metrics.val/accuracy")
        run_url = page.get_by_role("link", name="resnet18-sgd-lr0.1").get_attribute("href")
        assert run_url is not None
        shoot("run", run_url, '#charts[data-ready="true"]')
        rows = page.locator("#charts figure")
        assert rows.count() == 3
        ids = [run_url.rsplit("/", 1)[1]]
        page.goto(f"{server.url}/projects/cifar10")
        hrefs = page.locator("#runs tbody th a").evaluate_all("(links) => links.map((a) => a.href)")
        ids += [href.rsplit("/", 1)[1] for href in hrefs[:3] if not href.endswith(ids[0])][:2]
        query = "&".join(f"run={i}" for i in ids)
        shoot("compare", f"/compare?{query}", '#charts[data-ready="true"]')
        shoot("account", "/account", "#sessions tbody tr")
        shoot("audit", "/admin/audit")
        shoot("users", "/admin/users")
        watch.assert_clean()


def test_agents_and_run_again_at_laptop_size(server_factory: Start, tmp_path: Path) -> None:
    """Issue 16's Agents page (an agent with a task running on one of its GPUs) and the
    "Run again" form of a task's run (tests/e2e/test_dashboard_agents.py tests them)."""
    from tests.e2e.test_agent_run import api, state_of
    from tests.e2e.test_dashboard_agents import TRAIN, start_agent, submit_in

    server = server_factory()
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "ml"}).status_code == 201
    code = tmp_path / "project"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    agent = start_agent(server, tmp_path, "gpu-node-1", "--labels", "a100")
    try:
        done = submit_in(server, code, "--name", "resnet-baseline", "--", "python", "train.py")
        finished = state_of(server, done, "succeeded", "failed", timeout=60)
        assert finished["state"] == "succeeded"
        busy = submit_in(server, code, "--gpus", "1", "--", "python", "-c",
                         "import time; time.sleep(120)")  # fmt: skip
        state_of(server, busy, "running", timeout=60)
        _, link = startup_link(server)
        out = shots_dir(tmp_path)
        with chromium() as browser:
            page, watch = browser.new_page()
            page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
            page.goto(link)
            page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
            for name, path in (
                ("agents", "/admin/agents"),
                ("run-again", f"/runs/{finished['run_id']}/run-again"),
            ):
                page.goto(f"{server.url}{path}")
                page.wait_for_load_state("networkidle")
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= WIDTH, f"{name} is {overflow}px wide"
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=False)
                assert target.stat().st_size > 10_000, name
            watch.assert_clean()
    finally:
        agent.process.kill()
        agent.process.wait()


# The task pages (issue 16): tasks that succeeded, failed, run, wait and were cancelled.
TRAIN = textwrap.dedent(
    """
    import argparse, math, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hold", type=float, default=0)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    print(f"resnet18 on cifar10: lr={args.lr}, {args.epochs} epochs", flush=True)
    for epoch in range(1, args.epochs + 1):
        loss = 2.3 * math.exp(-epoch * args.lr * 3) + 0.05
        accuracy = 0.93 * (1 - math.exp(-epoch * args.lr * 2))
        print(f"epoch {epoch:3d}/{args.epochs}  train/loss {loss:.4f}  "
              f"val/accuracy {accuracy:.4f}", flush=True)
        if args.fail and epoch == 12:
            print("RuntimeError: CUDA out of memory", file=sys.stderr, flush=True)
            sys.exit(1)
        time.sleep(0.02)
    time.sleep(args.hold)
    """
)
TASK_SETTINGS = {"SAFEBOARD__JOBS__REAPER_SECONDS": "0.5", "SAFEBOARD__JOBS__POLL_SECONDS": "1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A TLS server for the task pages' shots (``agents`` runs its agent against it)."""
    started = start_server(tmp_path, "--tls", name="tasks", settings=TASK_SETTINGS)
    with api(started) as client:
        assert client.post("/api/v1/projects", json={"name": "cifar10"}).status_code == 201
    yield started
    started.stop()


def queue(
    server: ServerProcess, code: Path, label: str, *args: str, gpus: int = 0, env: str = ""
) -> int:
    more = ["--env", env] if env else []
    made = run_cli("task", "submit", "--project", "cifar10", "--label", label, "--gpus",
                   str(gpus), "--code", str(code), *more, "--json", "--", "python3", "train.py",
                   *args, data_dir=server.data_dir)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return int(json.loads(made.stdout)["id"])


def test_task_pages_at_laptop_size(
    server: ServerProcess, agents: Callable[..., Agent], tmp_path: Path
) -> None:
    code = tmp_path / "resnet"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    agents("gpu-box-1", "--labels", "shots")
    done = queue(server, code, "shots", "--lr", "0.1", gpus=1)
    failed = queue(server, code, "shots", "--lr", "0.3", "--fail")
    assert state_of(server, done, "succeeded", timeout=60)["state"] == "succeeded"
    assert state_of(server, failed, "failed", timeout=60)["state"] == "failed"
    running = queue(server, code, "shots", "--lr", "0.03", "--hold", "600", gpus=2,
                    env="DATASET=/data/cifar10")  # fmt: skip
    cancelled = queue(server, code, "h100", "--lr", "0.01")
    assert run_cli("task", "cancel", str(cancelled), data_dir=server.data_dir).returncode == 0
    queue(server, code, "h100", "--lr", "0.003", "--epochs", "90")  # no agent has h100: waits
    state_of(server, running, "running", timeout=60)
    _, link = startup_link(server)
    out = shots_dir(tmp_path)

    with chromium(f"--ignore-certificate-errors-spki-list={spki_sha256(server.port)}") as browser:
        page, watch = browser.new_page()
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)

        def shoot(name: str, path: str, ready: str) -> None:
            page.goto(f"{server.url}{path}")
            expect(page.locator(ready).first).to_be_visible(timeout=30_000)
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= WIDTH, f"{name} is {overflow}px wide"
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=False)
            assert target.stat().st_size > 10_000, name

        shoot("tasks", "/projects/cifar10/tasks", f'tr[data-task="{running}"]')
        shoot("task", f"/tasks/{running}", "#log li >> text=epoch  30/30")
        watch.assert_clean()
    assert run_cli("task", "cancel", str(running), data_dir=server.data_dir).returncode == 0
    wait_for(lambda: state_of(server, running, "cancelled")["state"] == "cancelled", 30)
