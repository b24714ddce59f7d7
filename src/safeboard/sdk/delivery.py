"""Talking to the server for one run: make sure the run (and its project) exist, post
metric batches, set the final status. Knows which failures are worth retrying."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from safeboard import wire
from safeboard.client.retry import RetryPolicy
from safeboard.client.trust import CertificateChanged, UntrustedCertificate
from safeboard.client.typed import Client
from safeboard.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    KeyBoundToProject,
    NotFound,
    ProjectMoved,
    ProjectNotFound,
    SafeboardError,
    Unauthenticated,
)
from safeboard.sdk.batches import Batch

__all__ = [
    "CONFIRM_TIMEOUT", "PAUSES", "Delivery", "Undeliverable", "no_access", "retryable",
]  # fmt: skip

# init() waits this long for the server to confirm the run: a server that does not answer
# within it is "away" (R2), and training starts spooling.
CONFIRM_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

# The pauses of the background loops (sender, uploader) while the server is away: the one
# retry policy of safeboard.client, waiting up to 30 s, or what the server asks for with
# Retry-After (up to 60 s); what is not sent stays spooled.
PAUSES = RetryPolicy(base=0.5, cap=30.0, retry_after_cap=60.0)

log = logging.getLogger("safeboard.sdk")
T = TypeVar("T")


class Undeliverable(Exception):
    """The server refused this batch for good (invalid data): retrying cannot help."""


class Delivery:
    """``connect`` makes the typed client; ``renew`` (optional) picks up a replaced key
    after a 401 (``Connection.renewed``), and the request is tried once more;
    ``listening`` (optional) says whether anything accepts a connection at the server's
    address (``Connection.listening``), asked before a delivery while it is away."""

    def __init__(
        self,
        connect: Callable[[], Client],
        meta: dict[str, Any],
        *,
        renew: Callable[[], bool] = lambda: False,
        listening: Callable[[], bool] = lambda: True,
    ) -> None:
        self._connect = connect
        self._renew = renew
        self.listening = listening
        self._client: Client | None = None
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

    def send_updates(self) -> bool:
        """Send the changes queued since the last round; False when there were none."""
        with self._patch_lock:
            patch, self._patch = self._patch, {}
        if not patch:
            return False
        try:
            self.update(patch)
        except BaseException:
            self.queue_update(**patch)  # keep it for the next round
            raise
        return True

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _call(self, request: Callable[[Client], T]) -> T:
        try:
            return request(self.client)
        except Unauthenticated:
            if not self._renew():
                raise
            self.close()
            return request(self.client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ensure_run(self, timeout: httpx.Timeout | None = None) -> None:
        """Create the run on the server (idempotent by id); create the project if needed.
        A project that stays out of reach (there but without a grant, or not creatable with
        this key) raises ProjectNotFound."""
        if self.meta.get("on_server"):
            return
        if self.meta.get("task"):
            self._attach()
            return
        meta = self.meta

        def create(client: Client) -> None:
            client.create_run(
                meta["project"], run_id=meta["id"], name=meta["name"], config=meta["config"],
                tags=meta["tags"], system=meta["system"], notes=meta.get("notes", ""),
                timeout=timeout,
            )  # fmt: skip

        try:
            self._call(create)
        except ProjectMoved as exc:  # renamed: the run goes where the project is now
            self._follow(exc)
            self._call(create)
        except NotFound:
            project = meta["project"]
            try:
                with contextlib.suppress(Conflict):  # made meanwhile, or there out of sight
                    self._call(lambda client: client.create_project(project, timeout=timeout))
            except KeyBoundToProject as exc:  # the owner's own key, for another project
                raise KeyBoundToProject(
                    f"project {project!r} is not the one this API key is bound to ({exc.message})"
                ) from None
            except Forbidden as exc:
                raise ProjectNotFound(f"{no_access(project)} ({exc.message})") from None
            try:
                self._call(create)
            except NotFound:
                raise ProjectNotFound(no_access(project)) from None
        self.meta["on_server"] = True

    def _follow(self, moved: ProjectMoved) -> None:
        """The project was renamed (and this key may read it): log there, and say so once,
        rather than create a new, empty project under the old name."""
        if not moved.new_name:
            raise ProjectNotFound(f"{moved.message}; no new name was given") from None
        log.warning("project %r was renamed to %r: this run is logged there (use the new "
                    "name in init())", self.meta["project"], moved.new_name)  # fmt: skip
        self.meta["project"] = moved.new_name

    def _attach(self) -> None:
        """A task's run exists (made at submit): read its project and name, and add the
        config and tags the script gave (the task's token reaches this run only)."""
        meta = self.meta
        run = self._call(lambda client: client.run(meta["id"]))
        meta["project"], meta["name"] = run.project, run.name
        if meta["config"] or meta["tags"]:
            self._call(
                lambda client: client.update_run(
                    meta["id"], config=meta["config"], tags=meta["tags"]
                )
            )
        meta["on_server"] = True

    def send(self, batch: Batch) -> None:
        """Post one batch. Raises Undeliverable for a refusal that retrying cannot fix, and
        SafeboardError for everything worth another try later."""
        self.ensure_run()
        # Packed arrays, packed once: no JSON numbers to print here or to parse there.
        body = batch.body
        try:
            with self._on_the_run():
                run_id = self.meta["id"]
                self._call(
                    lambda client: client.post_metrics(run_id, body, media_type=wire.MEDIA_TYPE)
                )
        except BadRequest as exc:  # 400/422: the data itself is wrong
            raise Undeliverable(exc.message) from None

    def update(self, patch: dict[str, Any]) -> None:
        """Config (merged), tags (null removes) and notes changed after the run started."""
        self.ensure_run()
        run_id = self.meta["id"]
        with self._on_the_run():
            self._call(lambda client: client.update_run(run_id, **patch))

    def finish(self, status: str) -> None:
        self.ensure_run()
        run_id = self.meta["id"]
        with contextlib.suppress(Conflict), self._on_the_run():  # Conflict: a retried finish
            self._call(lambda client: client.finish_run(run_id, status))

    @contextlib.contextmanager
    def _on_the_run(self) -> Iterator[None]:
        """A 404 on a run the server had: it was deleted, or the grant on its project was
        removed (the server does not say which, by design): say both, and the fixes."""
        try:
            yield
        except NotFound as exc:
            run, project = self.meta["id"], self.meta["project"]
            raise NotFound(
                f"run {run} is out of reach ({exc.message}): it was deleted, or your grant on "
                f"project {project!r} was removed; ask its owner to grant you the editor role, "
                f"or drop the run: safeboard sync --discard {run}"
            ) from None


def no_access(project: str) -> str:
    return (
        f"project {project!r} does not exist or you have no access to it; ask its owner to "
        "grant you the editor role"
    )


# Failures that wait for the user (a key, a grant, a certificate, an address to fix): the
# data stays spooled for `safeboard sync`. The rest (server away, overloaded, restarting,
# a 5xx) heal by themselves.
_NEEDS_THE_USER = (
    Unauthenticated, Forbidden, NotFound, ConfigError, CertificateChanged, UntrustedCertificate,
)  # fmt: skip


def retryable(exc: SafeboardError) -> bool:
    return not isinstance(exc, _NEEDS_THE_USER)
