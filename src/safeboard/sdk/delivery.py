"""Talking to the server for one run: make sure the run (and its project) exist, post
metric batches, set the final status. Knows which failures are worth retrying."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from safeboard import wire
from safeboard.client.http import ApiClient
from safeboard.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    SafeboardError,
    Unauthenticated,
)

__all__ = ["Delivery", "Undeliverable"]

log = logging.getLogger("safeboard.sdk")


class Undeliverable(Exception):
    """The server refused this batch for good (invalid data): retrying cannot help."""


class Delivery:
    def __init__(self, connect: Callable[[], ApiClient], meta: dict[str, Any]) -> None:
        self._connect = connect
        self._client: ApiClient | None = None
        self.meta = meta
        self._patch: dict[str, Any] = {}
        self._patch_lock = threading.Lock()

    def queue_update(self, **changes: Any) -> None:
        """Remember a change to send with the next delivery round (merged with earlier ones)."""
        with self._patch_lock:
            for field, value in changes.items():
                if isinstance(value, dict):
                    self._patch.setdefault(field, {}).update(value)
                else:
                    self._patch[field] = value

    def send_updates(self) -> None:
        with self._patch_lock:
            patch, self._patch = self._patch, {}
        if not patch:
            return
        try:
            self.update(patch)
        except BaseException:
            self.queue_update(**patch)  # keep it for the next round
            raise

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ensure_run(self) -> None:
        """Create the run on the server (idempotent by id); create the project if needed."""
        if self.meta.get("on_server"):
            return
        project = self.meta["project"]
        body = {
            "id": self.meta["id"], "name": self.meta["name"], "config": self.meta["config"],
            "tags": self.meta["tags"], "system": self.meta["system"],
        }  # fmt: skip
        try:
            self.client.post(f"/api/v1/projects/{project}/runs", json=body)
        except NotFound:
            with contextlib.suppress(Conflict):  # made meanwhile by someone else
                self.client.post("/api/v1/projects", json={"name": project})
            self.client.post(f"/api/v1/projects/{project}/runs", json=body)
        self.meta["on_server"] = True

    def send(self, batch: dict[str, Any]) -> None:
        """Post one batch. Raises Undeliverable for a refusal that retrying cannot fix, and
        SafeboardError for everything worth another try later."""
        self.ensure_run()
        # Packed arrays: no JSON numbers to print here or to parse on the server.
        body = wire.pack(batch["batch_id"], batch["metrics"])
        try:
            self.client.post(
                f"/api/v1/runs/{self.meta['id']}/metrics",
                content=body,
                headers={"Content-Type": wire.MEDIA_TYPE},
            )
        except BadRequest as exc:  # 400/422: the data itself is wrong
            raise Undeliverable(exc.message) from None

    def update(self, patch: dict[str, Any]) -> None:
        """Config (merged), tags (null removes) and notes changed after the run started."""
        self.ensure_run()
        self.client.patch(f"/api/v1/runs/{self.meta['id']}", json=patch)

    def finish(self, status: str) -> None:
        self.ensure_run()
        with contextlib.suppress(Conflict):  # already final: a retried finish
            self.client.patch(f"/api/v1/runs/{self.meta['id']}", json={"status": status})


def retryable(exc: SafeboardError) -> bool:
    """Auth problems wait for the user (spooled, delivered by `safeboard sync`); the rest
    (server away, overloaded, restarting) heal by themselves."""
    return not isinstance(exc, (Unauthenticated, Forbidden))
