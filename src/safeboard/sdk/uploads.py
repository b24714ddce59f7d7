"""Artifact uploads of a run, in a thread of their own: a 5 GB model must neither hold up
the metric batches nor the training loop.

``run.log_artifact()`` and ``run.log_image()`` queue a record; the sender thread writes it
to the spool (an image logged as an array becomes a PNG there) and, once the metric
batches logged before it are delivered and the run exists on the server, *releases* it to
this thread. Each upload resumes where the server stopped receiving (its upload id is
derived from the file), so a retry, a restart or ``safeboard sync`` never starts over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeboard.client.artifacts import TransferStopped, upload_file
from safeboard.client.http import ApiClient
from safeboard.client.typed import Client
from safeboard.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    SafeboardError,
    Unauthenticated,
)
from safeboard.ids import new_id
from safeboard.sdk import notices
from safeboard.sdk.delivery import PAUSES, retryable
from safeboard.sdk.images import Pixels, png_bytes
from safeboard.sdk.media import is_steps, send_steps
from safeboard.sdk.spool import RunSpool

__all__ = ["Uploader", "artifact_record", "refused_for_good", "spool_record", "upload_record"]

log = logging.getLogger("safeboard.sdk")

RECHECK_SECONDS = 60.0  # after a refusal that needs the user: one look a minute


def artifact_record(**fields: Any) -> dict[str, Any]:
    """A record of an artifact to upload (``pixels`` for an image still to encode)."""
    return {"id": new_id(), "path": None, "spooled_file": None, **fields}


def spool_record(spool: RunSpool, record: dict[str, Any]) -> Path:
    """Write a queued record to the spool; an image's pixels become a PNG file there."""
    pixels: Pixels | None = record.pop("pixels", None)
    if pixels is not None:
        image = spool.image_path(record["id"])
        spool.write_file(image, png_bytes(pixels))
        record["spooled_file"] = image.name
    return spool.add_artifact(record)


def refused_for_good(exc: SafeboardError) -> bool:
    """A refusal that no retry can change: the file is gone, too large, or invalid, or
    the run was deleted. (A rejected credential is not: `safeboard sync` may fix it.)"""
    if isinstance(exc, (Unauthenticated, Forbidden)):
        return False
    return isinstance(exc, (BadRequest, PayloadTooLarge, NotFound)) or exc.code == "config"


def upload_record(
    client: ApiClient,
    spool: RunSpool,
    run_id: str,
    record: dict[str, Any],
    *,
    progress: Callable[[str, int, int], None] = lambda *_: None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Upload one spooled artifact; the artifact as the server holds it. (Histograms and
    texts per step travel as records too: sent as one batch, sdk/media.py.)"""
    if is_steps(record):
        return send_steps(client, run_id, record)
    spooled = record.get("spooled_file")
    path = spool.path / str(spooled) if spooled else Path(str(record["path"]))
    return upload_file(
        client, run_id, path, name=record["name"], kind=record["kind"],
        content_type=record.get("content_type"), step=record.get("step"),
        progress=progress, sleep=sleep,
    )  # fmt: skip


class Uploader(threading.Thread):
    """Uploads released artifacts one after another, with backoff while the server is
    away; stops at its deadline (what is left stays in the spool)."""

    def __init__(
        self,
        spool: RunSpool,
        connect: Callable[[], Client],
        run_id: str,
        *,
        interval: float,
        renew: Callable[[], bool] = lambda: False,
        on_refusal: Callable[[SafeboardError], None] = lambda _: None,
    ) -> None:
        super().__init__(name="safeboard-uploader", daemon=True)
        self.spool = spool
        self._connect = connect
        self._renew = renew  # a 401: the discovery file may hold a new key
        self.on_refusal = on_refusal  # a refusal that needs the user: said once, kept
        self._client: Client | None = None
        self.run_id = run_id
        self.interval = interval
        self._released = 0
        # Released artifacts up to this number were all handled by a round: until another
        # is released, a round reads nothing (the spool's directory, thousands of batch
        # files while the server is away, is not listed twice a second beside the loop).
        self._done = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._failures = 0
        self._retry_at = 0.0
        self._hopeless = False
        self.uploaded = 0
        self.dropped = 0
        self.idle = threading.Event()
        self.idle.set()
        self._trouble = False  # an unexpected failure of a round, said once

    @property
    def released(self) -> int:
        return self._released

    def release(self, number: int) -> None:
        """Spooled artifacts up to ``number`` may go (the run and the batches before them
        are on the server)."""
        if number > self._released:
            self.idle.clear()
            self._released = number
            self._wake.set()

    def stop(self, deadline: float) -> None:
        """Finish what is released, until ``deadline`` (monotonic); then stop mid-upload
        (it resumes from the server's offset next time)."""
        self._deadline = deadline
        self._stopping.set()
        self._wake.set()

    def _progress(self, _phase: str, _done: int, _total: int) -> None:
        if self._stopping.is_set() and time.monotonic() >= self._deadline:
            raise TransferStopped("the run's time to deliver is up")

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(min(seconds, max(0.0, self._deadline - time.monotonic())))
        self._wake.clear()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                self._guarded_round()
            while not self.idle.is_set() and not self._hopeless:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    return
                if time.monotonic() < self._retry_at:
                    self._sleep(self._retry_at - time.monotonic())
                self._guarded_round(final=True)
        finally:
            self._close()

    def _guarded_round(self, *, final: bool = False) -> None:
        """A round that fails unexpectedly (a spooled file removed by hand, a full disk) is
        said once and retried after a pause: the thread never dies silently."""
        try:
            self._round(final=final)
        except Exception as exc:  # noqa: BLE001  (see above)
            if not self._trouble:
                notices.say(
                    f"run {self.run_id}: uploading artifacts failed ({exc}); retrying. What is "
                    f"not uploaded stays in {self.spool.path} for `safeboard sync`"
                )
            self._trouble = True
            self._retry_at = time.monotonic() + PAUSES.delay(1, None)

    def _round(self, *, final: bool = False) -> None:
        if time.monotonic() < self._retry_at and not final:
            return
        released = self._released
        if released <= self._done and not final:
            return  # nothing released since the last round that left none behind
        for path, record in self.spool.artifacts():
            if self.spool.artifact_number(path) > released:
                break
            try:
                if self._client is None:
                    self._client = self._connect()
                upload_record(
                    self._client.api, self.spool, self.run_id, record,
                    progress=self._progress, sleep=self._sleep,
                )  # fmt: skip
                self.uploaded += 1
            except TransferStopped:
                return
            except Unauthenticated as exc:
                if self._renew():  # a new key in the discovery file: go on with it
                    self._close()
                    return
                self._pause(exc)
                return
            except SafeboardError as exc:
                if not refused_for_good(exc):
                    self._pause(exc)
                    return
                self.dropped += 1
                notices.say(f"artifact {record['name']!r} not uploaded: {exc.message}")
            self.spool.drop_artifact(path, record)
        self._failures = 0
        self._hopeless = False
        self._done = released
        if all(number > self._released for number in self.spool.artifact_numbers()):
            self.idle.set()

    def _pause(self, exc: SafeboardError) -> None:
        self._failures += 1
        self._hopeless = not retryable(exc)
        wait = RECHECK_SECONDS if self._hopeless else PAUSES.delay(self._failures, exc)
        self._retry_at = time.monotonic() + wait
        if self._hopeless:
            self.on_refusal(exc)
        log.debug("artifact uploads paused (%s); retrying in %.1f s", exc.message, wait)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
