"""Live streams at a stop and across it: a graceful stop (SIGTERM) with streams open ends
each with a ``closing`` event and exits within a second (3 s allowed on a loaded machine;
bench/live_stop.py measures it); a client that reconnects with ``Last-Event-ID`` receives
every event once, across a restart on SQLite and across two replicas on PostgreSQL."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from safeboard.datadir import LOCAL_SOCKET
from tests.e2e.browser import chromium
from tests.e2e.conftest import ServerProcess, free_port
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_live_events import _key, _make_run

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]
PATH = "/api/v1/projects/live/events"


class Follower:
    """Follows a stream as a browser's EventSource does: on a close or a lost server it
    reconnects (to ``servers()[0]``, the first that is up) with ``Last-Event-ID``."""

    def __init__(self, servers: Callable[[], list[ServerProcess]], key: str) -> None:
        self.servers = servers
        self.key = key
        self.events: list[tuple[int | None, str, dict[str, object]]] = []
        self.closings = 0
        self.streams = 0  # opened
        self.cut = 0  # ended without a closing event or a clean end of the response
        self.last_id: int | None = None
        self.connected = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.connected.wait(15), "the stream did not open"

    def _run(self) -> None:
        while not self.done.is_set():
            headers = {"Authorization": f"Bearer {self.key}"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = str(self.last_id)
            up = self.servers()
            if not up:  # between a stop and the next start
                time.sleep(0.1)
                continue
            try:
                with (
                    up[0].client() as client,
                    client.stream("GET", PATH, headers=headers, timeout=30) as response,
                ):
                    if response.status_code != 200:
                        time.sleep(0.1)
                        continue
                    self.streams += 1
                    self._read(response.iter_lines())
            except httpx.TransportError:
                time.sleep(0.1)  # the server is away (or cut the stream: counted there)

    def _read(self, lines: object) -> None:
        block: dict[str, str] = {}
        try:
            for line in lines:  # type: ignore[attr-defined]
                if line.startswith(": connected"):
                    self.connected.set()
                elif line == "" and "event" in block:
                    self._take(block)
                    block = {}
                elif ": " in line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    block[name] = value
        except httpx.TransportError:
            self.cut += 1
            raise

    def _take(self, block: dict[str, str]) -> None:
        event_id = int(block["id"]) if "id" in block else None
        if event_id is not None:
            self.last_id = event_id
        if block["event"] == "closing":
            self.closings += 1
            return
        self.events.append((event_id, block["event"], json.loads(block["data"])))

    def steps(self) -> list[int]:
        return [data["data"]["last_step"]["loss"]  # type: ignore[index]
                for _, kind, data in self.events if kind == "metrics"]  # fmt: skip

    def stop(self) -> None:
        self.done.set()


def _log_until_stored(servers: Callable[[], list[ServerProcess]], key: str, run_id: str,
                      step: int) -> None:  # fmt: skip
    """One batch, sent again (same id) until a server acknowledges it: stored once."""
    body = {"batch_id": f"step-{step:06d}", "metrics": {"loss": {
        "steps": [step], "times": [1.7e9 + step], "values": [0.5]}}}  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with servers()[0].client() as client:
                answer = client.post(f"/api/v1/runs/{run_id}/metrics", json=body,
                                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"step {step} was never stored")


def _stop(server: ServerProcess) -> float:
    """SIGTERM; the seconds until the process exited."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    return time.monotonic() - started


def test_a_stop_closes_open_streams_at_once(server_factory: Start) -> None:
    server = server_factory()
    key = _key(server)
    with server.client() as client:
        _make_run(client, key)
    followers = [Follower(lambda: [server], key) for _ in range(5)]
    for follower in followers:
        follower.done.set()  # no reconnect once this stream ends
    took = _stop(server)
    # The stop ran the server's own cleanup (uvicorn's re-raised SIGTERM used to kill the
    # process before it: status -15, the local socket left behind).
    assert server.process.returncode == 0, server.log
    assert not (server.data_dir / LOCAL_SOCKET).exists()
    for follower in followers:
        follower.thread.join(5)
        assert (follower.closings, follower.cut) == (1, 0), server.log
    assert took < 3.0, f"the stop took {took:.2f} s with 5 streams open"


def _follow_across(stop_and_switch: Callable[[], None], servers: Callable[[],
                   list[ServerProcess]], key: str, run_id: str) -> Follower:  # fmt: skip
    follower = Follower(servers, key)
    for step in range(40):
        _log_until_stored(servers, key, run_id, step)
        if step == 20:
            stop_and_switch()
        time.sleep(0.02)
    deadline = time.monotonic() + 20
    while len(follower.steps()) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything sent twice would arrive by now
    follower.stop()
    return follower


def test_a_stream_resumes_across_a_restart_without_loss(server_factory: Start) -> None:
    port = free_port()
    up = [server_factory(name="srv", port=port)]
    key = _key(up[0])
    with up[0].client() as client:
        run_id = _make_run(client, key)

    def restart() -> None:
        old = up.pop()
        _stop(old)
        up.append(server_factory(name="srv", port=port))

    follower = _follow_across(restart, lambda: up, key, run_id)
    assert follower.closings >= 1  # it was told, and did reconnect
    assert follower.streams >= 2
    assert follower.steps() == list(range(40)), "an event was lost or sent twice"
    ids = [event_id for event_id, _, _ in follower.events]
    assert None not in ids
    assert len(set(ids)) == len(ids)


@pytest.mark.postgres
def test_a_stream_resumes_on_another_replica_without_loss(
    server_factory: Start, pg_url: str, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir(mode=0o700)
        (directory / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    up = [server_factory(name="a"), server_factory(name="b")]
    key = _key(up[0])
    with up[1].client() as client:
        run_id = _make_run(client, key)

    def stop_a() -> None:  # the stream, and the writes, go on with replica B
        _stop(up.pop(0))

    follower = _follow_across(stop_a, lambda: up, key, run_id)
    assert follower.closings >= 1
    assert follower.streams >= 2
    assert follower.steps() == list(range(40)), "an event was lost or sent twice"


def test_a_run_page_reconnects_and_keeps_updating_after_a_restart(
    server_factory: Start,
) -> None:
    """In headless Chromium: the run page's stream closes at the stop (at once), the page
    says it is reconnecting, and once the server is back it shows what is logged next."""
    port = free_port()
    server = server_factory(name="srv", port=port)
    _, link = startup_link(server)
    key = _key(server)
    with server.client() as client:
        run_id = _make_run(client, key)
    up = [server]
    _log_until_stored(lambda: up, key, run_id, 0)
    with chromium() as browser:
        page, watch = browser.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{run_id}")
        stream = page.locator("body")
        expect(stream).to_have_attribute("data-stream", "open", timeout=TIMEOUT_MS)
        expect(page.locator('figure[data-key="loss"] canvas')).to_have_count(1, timeout=TIMEOUT_MS)
        took = _stop(up.pop())
        assert took < 3.0, f"the stop took {took:.2f} s with the page's stream open"
        expect(stream).to_have_attribute("data-stream", "reconnecting", timeout=TIMEOUT_MS)
        up.append(server_factory(name="srv", port=port))
        expect(stream).to_have_attribute("data-stream", "open", timeout=20_000)
        for step in (2, 3):
            _log_until_stored(lambda: up, key, run_id, step)
        expect(page.locator("#live")).to_contain_text("loss at step 3", timeout=TIMEOUT_MS)
        # Only the refused reconnections may have reached the console.
        watch.console[:] = [c for c in watch.console if "ERR_CONNECTION_REFUSED" not in c]
        watch.assert_clean()
