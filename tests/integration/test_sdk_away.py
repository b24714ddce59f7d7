"""While nothing answers at the server's address, the SDK's threads stay quiet beside the
training loop (issue 13): each of the sender's retries is one connect (``Delivery.
listening``), not a request, and reads nothing from the spool; the uploader lists the
spool only when an artifact was released to it. Every moment those threads take the
interpreter lock back could stop a ``log()`` call for a millisecond or more
(docs/benchmarks.md, the tenth session's stall snapshots)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import safeboard
from safeboard.client import reach
from safeboard.client.retry import RetryPolicy
from safeboard.sdk import sender
from safeboard.sdk.delivery import Delivery
from safeboard.sdk.spool import RunSpool
from safeboard.sdk.uploads import Uploader

FAST = RetryPolicy(base=0.05, cap=0.05, jitter=False)


def _counted(calls: Counter[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return counting


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_while_nothing_listens_the_sender_only_asks_and_tries_again_once_something_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init() finds nothing at the address: from its first retry on, the sender asks with
    one connect and sends nothing; once something accepts connections, it delivers (here
    to something that hangs up: the points stay spooled for `safeboard sync`)."""
    calls: Counter[str] = Counter()
    monkeypatch.setattr(sender, "PAUSES", FAST)  # a retry every 50 ms, not backing off
    monkeypatch.setattr(Delivery, "send", _counted(calls, "send", Delivery.send))
    monkeypatch.setattr(RunSpool, "batches", _counted(calls, "read", RunSpool.batches))
    answers: list[bool] = []

    def listening(address: reach.Address, timeout: float) -> bool:
        answers.append(reach_listening(address, timeout))
        return answers[-1]

    reach_listening = reach.listening
    monkeypatch.setattr(reach, "listening", listening)
    port = _closed_port()
    run = safeboard.init(
        "p", url=f"http://127.0.0.1:{port}", api_key="sbk_" + "a" * 43,
        spool_dir=tmp_path, quiet=True, flush_interval=0.05, system_metrics=False,
    )  # fmt: skip
    calls.clear()  # the sender's start reads the spool once (what an earlier process left)
    for step in range(100):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        time.sleep(0.01)
    _wait_for(lambda: len(answers) + calls["send"] >= 5)  # five retries at least
    assert calls["send"] == 0, "a request was made while nothing listened"
    assert not any(answers)
    assert calls["read"] == 0, "the spool was read while nothing listened"

    # Something listens now (it hangs up at once): the next retry is a delivery again.
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(0.1)
        stop = threading.Event()

        def hang_up() -> None:
            while not stop.is_set():
                try:
                    accepted, _ = server.accept()
                except TimeoutError:
                    continue
                accepted.close()

        hanging = threading.Thread(target=hang_up, daemon=True)
        hanging.start()
        try:
            _wait_for(lambda: calls["send"] >= 1)
            assert any(answers)
            assert calls["read"] >= 1  # the spooled batches go first
        finally:
            stop.set()
            hanging.join(5)
    run.finish(timeout=0.5)
    assert RunSpool(tmp_path, run.id).pending_points() == 100  # all kept for `safeboard sync`


def test_the_uploader_lists_the_spool_only_when_an_artifact_was_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twice a second, for the run's life, the uploader listed the spool's directory (with
    the server away, thousands of batch files) to find nothing to upload."""
    calls: Counter[str] = Counter()
    monkeypatch.setattr(RunSpool, "artifacts", _counted(calls, "list", RunSpool.artifacts))
    spool = RunSpool(tmp_path, "a" * 32)

    def no_client() -> Any:
        raise AssertionError("nothing was released: no client is needed")

    uploader = Uploader(spool, no_client, "a" * 32, interval=0.01)
    uploader.start()
    try:
        time.sleep(0.3)  # about 30 rounds
        assert calls["list"] == 0
        uploader.release(1)  # released, but nothing spooled: listed once, then idle again
        _wait_for(lambda: calls["list"] >= 1)
        _wait_for(uploader.idle.is_set)
        listed = calls["list"]
        time.sleep(0.3)
        assert calls["list"] == listed
    finally:
        uploader.stop(time.monotonic())
        uploader.join(10)
