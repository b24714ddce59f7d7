"""``safeboard.init()`` and ``Run``: what a training script sees.

``run.log({"loss": 0.3}, step=i)`` costs an append to a deque (P3): no lock, no I/O, nothing
it could wait for; a background thread delivers (sender.py). At exit, or on ``finish()``,
the run flushes with a bounded wait and says what is left in the spool for ``safeboard sync``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from safeboard import vocabulary
from safeboard.client.credentials import resolve_server
from safeboard.client.retry import asked_wait
from safeboard.documents import MAX_NOTES_CHARS, document_problem, tags_problem
from safeboard.errors import (
    BadRequest,
    InvalidRequest,
    SafeboardError,
    ServerUnreachable,
    Unauthenticated,
)
from safeboard.ids import new_id
from safeboard.sdk import media, notices
from safeboard.sdk.connection import Connection
from safeboard.sdk.delivery import CONFIRM_TIMEOUT, PAUSES, Delivery, retryable
from safeboard.sdk.images import pixels_of
from safeboard.sdk.live import install_exit_hooks, live_run, register, unregister
from safeboard.sdk.machine import machine_info
from safeboard.sdk.sender import INLINE_POINTS, Sender
from safeboard.sdk.spool import RunSpool, spool_root
from safeboard.sdk.system import SystemMetrics, choose
from safeboard.sdk.task import TaskEnv, task_env, with_overrides
from safeboard.sdk.uploads import Uploader, artifact_record

__all__ = ["Run", "init", "live_run"]

log = logging.getLogger("safeboard.sdk")

Mode = Literal["online", "offline"]
# Spelled out for type checkers and editors; tests/unit/test_vocabulary.py checks them
# against safeboard.vocabulary, where the words are defined once.
ArtifactKind = Literal["file", "image", "model", "dataset", "table"]
Status = Literal["finished", "failed", "killed"]
KINDS = tuple(kind.value for kind in vocabulary.ArtifactKind)
FINAL = tuple(status.value for status in vocabulary.FINAL_STATUSES)
FINISH_WAIT_SECONDS = 30.0
_INLINE_ITEMS = 3 * INLINE_POINTS  # queue items (step, time, values) past which log() packs


class Run:
    """One run. Log with :meth:`log`; end with :meth:`finish` or a ``with`` block."""

    _away: ServerUnreachable | None = None  # nothing answered at init() (_confirm)

    def __init__(
        self,
        *,
        project: str,
        name: str | None,
        config: Mapping[str, Any] | None,
        tags: Mapping[str, str] | list[str] | None,
        mode: Mode,
        url: str | None,
        api_key: str | None,
        spool_dir: str | os.PathLike[str] | None,
        interval: float,
        quiet: bool = False,
        task: TaskEnv | None = None,
        system_interval: float | None = None,  # system metrics every so many s; None: off
    ) -> None:
        tag_map = dict(tags) if isinstance(tags, Mapping) else dict.fromkeys(tags or [], "")
        _refuse(document_problem(dict(config or {}), "config") or tags_problem(tag_map))
        # Inside a task: its run, made at submit; its project and name are the server's.
        self.id = task.run_id if task is not None else new_id()
        self.project = "" if task is not None else project
        self.name = "" if task is not None else name or f"run-{self.id[:8]}"
        delivery = None
        uploader = None
        self._busy_until = 0.0  # the server said "not now" at init(): said, and waited for
        server_url = None
        connection = None
        if task is not None:  # the task's token, in memory only: never in run.json
            connection = Connection(resolve_server(task.url, task.token))
            server_url = connection.url
        elif mode == "online":  # resolved before anything is created on disk
            connection = Connection(resolve_server(url, api_key))
            server_url = connection.url
        self.spool = RunSpool(Path(spool_dir) if spool_dir else spool_root(), self.id)
        # Held for the run's life (`safeboard sync` leaves it alone). Taken before the
        # clean-up below: a run held by another process (a task's, whose child calls
        # init()) is refused and left whole, never removed by the refused one.
        self.spool.lock()
        try:
            self._meta: dict[str, Any] = {
                "id": self.id, "project": self.project, "name": self.name,
                "config": dict(config or {}), "tags": tag_map, "system": machine_info(),
                "url": server_url, "status": "running", "on_server": False,
            }  # fmt: skip
            if task is not None:
                self._meta["task"] = True  # attach to the run (delivery.py), never create
            self.spool.write_meta(self._meta)
            if connection is not None:
                delivery = Delivery(
                    connection.client,
                    self._meta,
                    renew=connection.renewed,
                    listening=connection.listening,
                )
                self._confirm(delivery, quiet=quiet)
                uploader = Uploader(
                    self.spool, connection.client, self.id, interval=max(interval, 0.5),
                    renew=connection.renewed,
                )  # fmt: skip
                uploader.start()
            elif not quiet:
                notices.say_started(self.name, None, self.id, self.spool.path)
        except BaseException:  # a run that did not start leaves nothing behind
            if delivery is not None:
                delivery.close()
            self.spool.remove()
            self.spool.unlock()
            raise
        self._delivery = delivery
        self._connection = connection
        self._tensorboard: list[Any] = []  # TensorBoardSync threads (sync_tensorboard)
        self._uploader = uploader
        self._queue: deque[Any] = deque()  # step, time, values; step, time, ...
        self._artifacts: deque[dict[str, Any]] = deque()
        self._step = 0
        self._finished = False
        self._sender = Sender(
            self._queue, self.spool, delivery, interval=interval, artifacts=self._artifacts,
            uploader=uploader, busy_until=self._busy_until, away=self._away,
        )  # fmt: skip
        if uploader is not None:  # an upload refused for good is said like a batch refused
            uploader.on_refusal = self._sender.record_refusal
        self._sender.start()
        self._system = SystemMetrics.started(self._sender, system_interval)
        register(self)  # and full collections in log() skip the SDK's objects (live.py)

    def __repr__(self) -> str:
        return f"Run(project={self.project!r}, name={self.name!r}, id={self.id!r})"

    def _confirm(self, delivery: Delivery, *, quiet: bool) -> None:
        """Create the run on the server before init() returns. A refusal that needs the
        user (key, grant, certificate, address) raises, and nothing stays spooled; a server
        that is only away gets one warning, and the run spools (R2)."""
        url = str(self._meta["url"])
        try:
            delivery.ensure_run(timeout=CONFIRM_TIMEOUT)
        except SafeboardError as exc:
            if not retryable(exc) or isinstance(exc, BadRequest):
                delivery.close()
                self.spool.remove()
                raise
            if asked_wait(exc) is not None:  # it answered: busy, not away
                wait = PAUSES.delay(1, exc)
                self._busy_until = time.monotonic() + wait
                notices.say_busy(url, exc, wait, self.spool.path)
            else:
                notices.say_away(url, exc, self.spool.path)
                self._away = exc if isinstance(exc, ServerUnreachable) else None
            return
        self.project, self.name = str(self._meta["project"]), str(self._meta["name"])
        self.spool.write_meta(self._meta)
        if not quiet:
            notices.say_started(self.name, url, self.id, self.spool.path)

    def log(self, data: Mapping[str, float], step: int | None = None) -> None:
        """Record values at ``step`` (default: one past the last step). Returns at once."""
        if step is None:
            step = self._step
        self._step = step + 1
        # Three items, not a tuple: a tuple holding a dict stays tracked by the garbage
        # collector, and full collections walked every waiting point (stalls of 100 ms).
        # One extend() is one step of the interpreter: points logged from two threads
        # never interleave.
        queue = self._queue
        queue.extend((step, time.time(), dict(data)))
        if len(queue) >= _INLINE_ITEMS:
            self._sender.pack_inline()  # a fast loop packs now and then (sender.py)

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        kind: ArtifactKind = "file",
        *,
        content_type: str | None = None,
        step: int | None = None,
    ) -> None:
        """Upload a file as an artifact of this run, in the background. Returns at once;
        the file is read when it is uploaded (soon after the metrics logged before it), so
        leave it unchanged until then (``run.flush()`` waits for it)."""
        if kind not in KINDS:
            raise InvalidRequest(f"kind: one of {', '.join(KINDS)}")
        source = Path(path).expanduser().resolve()
        if not source.is_file():
            raise InvalidRequest(f"log_artifact: {path}: no such file")
        self._log_record(artifact_record(
            path=str(source), name=name or source.name, kind=kind, content_type=content_type,
            step=step,
        ))  # fmt: skip

    def log_image(self, key: Any = None, image: Any = None, step: int | None = None,
                  name: str | None = None) -> None:  # fmt: skip
        """``log_image(key, image, step)``: an image of the series ``key``; the earlier
        ``log_image(image, step, name)``: one image artifact (docs/sdk.md). ``image``: a
        numpy array, a PIL image (both copied now, stored as PNG) or an image file's path."""
        image, step, name = media.image_call(key, image, step, name, self._step - 1)
        if isinstance(image, (str, os.PathLike)):
            source = Path(image).expanduser().resolve()
            self.log_artifact(source, name or source.name, "image", step=step)
            return
        label = name or (f"image-{step}.png" if step is not None else "image.png")
        self._log_record(artifact_record(
            pixels=pixels_of(image), name=label, kind="image", content_type="image/png",
            step=step,
        ))  # fmt: skip

    def log_histogram(self, key: str, values: Any = None, *, counts: Any = None,
                      edges: Any = None, step: int | None = None,
                      bins: int = media.DEFAULT_BINS) -> None:  # fmt: skip
        """A histogram of ``key`` at ``step`` (default: the last log()'s): raw ``values``
        binned here, or ``counts`` and ``edges`` as they are (docs/sdk.md)."""
        at = max(self._step - 1, 0) if step is None else step
        entry = media.histogram_entry(
            key, values, counts=counts, edges=edges, step=at, when=time.time(), bins=bins
        )
        self._log_record(media.steps_record(histogram=entry))

    def log_text(self, key: str, text: str, step: int | None = None) -> None:
        """A text of ``key`` at ``step`` (default: the last log()'s), shown escaped."""
        at = max(self._step - 1, 0) if step is None else step
        self._log_record(media.steps_record(text=media.text_entry(key, text, at, time.time())))

    def _log_record(self, record: dict[str, Any]) -> None:
        if self._finished:
            raise InvalidRequest("this run is finished: log before finish()")
        self._artifacts.append(record)
        self._sender.wake()

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the run's config: what ``init(config=...)`` was given, with a task's
        parameter overrides applied ("Run again"), and what ``log_params`` added since.
        A script reads its parameters here: ``lr = run.config["lr"]``."""
        return copy.deepcopy(self._meta["config"])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add to the run's config (top-level keys replace earlier values). Raises
        InvalidRequest, changing nothing, when the config would exceed the bounds."""
        _refuse(document_problem({**self._meta["config"], **params}, "config"))
        self._change(config=dict(params))

    def set_tags(self, tags: Mapping[str, str | None] | list[str]) -> None:
        """Set tags (a list sets valueless tags; None as a value removes a tag)."""
        mapping = dict(tags) if isinstance(tags, Mapping) else dict.fromkeys(tags, "")
        _refuse(tags_problem({**self._meta["tags"], **mapping}))
        self._change(tags=mapping)

    def set_notes(self, notes: str) -> None:
        if len(notes) > MAX_NOTES_CHARS:
            raise InvalidRequest(f"notes: at most {MAX_NOTES_CHARS} characters")
        self._change(notes=notes)

    def _change(self, **changes: Any) -> None:
        for field, value in changes.items():
            if isinstance(value, dict):
                merged = {**self._meta[field], **value}
                self._meta[field] = {k: v for k, v in merged.items() if v is not None}
            else:
                self._meta[field] = value
        self.spool.write_meta(self._meta)
        if self._delivery is not None:
            # Also before the run reaches the server: a PATCH after creating it is harmless,
            # and a change racing with the creation is not lost.
            self._delivery.queue_update(**changes)
        self._sender.wake()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (at most ``timeout`` s) until everything logged so far is delivered."""
        self._sender.wake()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self._sender.idle.wait(0.05) and not self._queue and not self._artifacts
            uploads = self._uploader
            wait = max(0.0, min(0.5, deadline - time.monotonic()))
            if sent and (uploads is None or uploads.idle.wait(wait)) and self._sender.idle.is_set():
                return True
            self._sender.wake()
        return False

    def sync_tensorboard(self, logdir: str | os.PathLike[str]) -> None:
        """Import the TensorBoard event files written under ``logdir`` into this run as
        they are written, in a thread, until finish() (docs/tensorboard.md)."""
        from safeboard.sdk.tbimport import TensorBoardSync  # noqa: PLC0415  (rarely used)

        if self._connection is None:
            raise InvalidRequest("sync_tensorboard needs a server: this run is offline")
        sync = TensorBoardSync(self._connection.client, self.id, Path(logdir), say=notices.say)
        self._tensorboard.append(sync.start())

    def finish(self, status: Status = "finished", *, timeout: float = FINISH_WAIT_SECONDS) -> None:
        """Deliver what is left (waiting at most ``timeout`` s) and set the final status."""
        if self._finished:
            return
        if status not in FINAL:
            raise InvalidRequest(f"status: one of {', '.join(FINAL)}")
        self._finished = True
        unregister(self)
        if self._system is not None:  # its last sample goes with the rest
            self._system.stop()
        for sync in self._tensorboard:  # their last events before the run ends
            sync.stop()
        self._meta["status"] = status
        try:
            self.spool.write_meta(self._meta)
        except OSError as exc:  # the spool is gone or full: say it, never crash the script
            notices.say(f"run {self.id}: its status is not kept in {self.spool.path}: {exc}")
        busy = self._wait(time.monotonic() + timeout)
        left = self.spool.pending_points()
        files = self.spool.pending_artifacts()
        cause = self._sender.refusal
        marked = False
        if self._delivery is not None and not busy and not files and not left and cause is None:
            marked, cause = self._mark(self._delivery, status)
        elif self._delivery is not None and not busy:
            self._delivery.close()
        if not busy:
            self.spool.unlock()  # else the process's end releases it
        if marked or (self._delivery is None and not left and not files):
            return
        what = self.spool.undelivered(left, files, status)
        if cause is not None and self._meta.get("task") and isinstance(cause, Unauthenticated):
            notices.say(  # a task's dead token: nothing can send them (notices.say_refused)
                f"run {self.name} ({self.id}): {what} not delivered: {cause.message}. This "
                f"task's attempt is over; kept in {self.spool.path} on this machine, where "
                "`safeboard sync` with your own key can deliver them"
            )
        elif cause is not None:
            notices.say(
                f"run {self.name} ({self.id}): {what} not delivered: {cause.message}. They "
                f"are kept in {self.spool.path}: once that is fixed, run `safeboard sync` (or "
                f"drop them: safeboard sync --discard {self.id})"
            )
        else:
            notices.say(
                f"run {self.name} ({self.id}): {what} not delivered yet; kept in "
                f"{self.spool.path}: run `safeboard sync` to send it"
            )

    def _wait(self, deadline: float) -> bool:
        """Let the sender and the uploader deliver until ``deadline``: whether one is
        still busy then. Bounded by the deadline alone: a request to a server that hangs
        may outlive it, in a daemon thread that ends with the process, and what the sender
        holds goes to the spool (finish(timeout=T) returns in about T)."""
        self._sender.stop(deadline=deadline)
        self._sender.join(_left(deadline))
        uploading = False
        if self._uploader is not None:
            self._uploader.stop(deadline)
            self._uploader.join(_left(deadline))
            uploading = self._uploader.is_alive()
        if self._sender.is_alive():
            with contextlib.suppress(OSError):
                self._sender.abandon()
            return True
        return uploading

    def _mark(self, delivery: Delivery, status: str) -> tuple[bool, SafeboardError | None]:
        """Set the final status on the server: (done, a refusal that needs the user)."""
        try:
            delivery.finish(status)
            self.spool.remove()
        except SafeboardError as exc:
            log.debug("run %s not marked %s yet (%s)", self.id, status, exc.message)
            if retryable(exc):
                return False, None
            self._sender.record_refusal(exc)
            return False, exc
        except Exception as exc:  # noqa: BLE001  (never let the last step crash training)
            notices.say(f"run {self.id} not marked {status} yet ({exc})")
            return False, None
        else:
            return True, None
        finally:
            delivery.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = kind is not None and not issubclass(kind, KeyboardInterrupt)
        self.finish("killed" if kind is KeyboardInterrupt else ("failed" if failed else "finished"))


def _refuse(problem: str | None) -> None:
    """What the server would refuse for good (safeboard.documents) is refused here, before
    it is spooled: the training script learns it at once."""
    if problem is not None:
        raise InvalidRequest(problem)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def init(
    project: str | None = None,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | list[str] | None = None,
    mode: Mode | None = None,
    url: str | None = None,
    api_key: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    flush_interval: float = 0.5,
    quiet: bool | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> Run:
    """Start a run in ``project``. With no arguments it finds the server the way the CLI
    does (``SAFEBOARD_URL`` + ``SAFEBOARD_API_KEY``, ``safeboard login``, or the local
    server's discovery file); ``mode="offline"`` (or ``SAFEBOARD_MODE=offline``) needs no
    server at all: ``safeboard sync`` uploads later.

    Online, the server confirms the run before this returns: a wrong, revoked or expired
    key, a key without write scope, no grant on the project, an untrusted or changed
    certificate, a wrong scheme or a malformed URL raise (``safeboard.AuthenticationError``,
    ``safeboard.PermissionDenied`` and their subclasses, see docs/sdk.md). A server that is
    only away gets one warning on stderr, and the run spools and retries in the background.
    One line on stderr names the run's page in the dashboard, unless ``quiet`` (or
    ``SAFEBOARD_QUIET=1``).

    Inside a task (the agent sets ``SAFEBOARD_TASK_TOKEN``, ``SAFEBOARD_RUN_ID``,
    ``SAFEBOARD_URL`` and ``SAFEBOARD_CA_CERT``), it attaches to the task's run with the
    task's token: ``project``, ``name``, ``url`` and ``api_key`` are ignored (the run and
    its project were chosen at submit), ``config`` and ``tags`` are added to the run. A task
    run again with other parameters (``SAFEBOARD_PARAMS``) has them applied on top of
    ``config`` (nested objects merged key by key): the run's config shows the values used.
    System metrics (``system/`` keys) are sampled every ``system_metrics_interval`` s (10);
    ``system_metrics=False`` turns them off (docs/sdk.md, "System metrics")."""
    install_exit_hooks()
    chosen = mode or os.environ.get("SAFEBOARD_MODE", "online")
    if chosen not in ("online", "offline"):
        raise InvalidRequest("mode: online or offline")
    try:
        task = task_env() if chosen == "online" else None
        if task is None and not project:
            raise InvalidRequest('init(): name the project, e.g. safeboard.init("mnist")')
        if task is not None and task.params:  # "Run again": the values this task was given
            config = with_overrides(config or {}, task.params)
        held = live_run(task.run_id) if task is not None else None
        if held is not None:  # init() again in the task's process: the run it holds
            if config:
                held.log_params(config)
            if tags:
                held.set_tags(tags)
            return held
        return Run(
            project=project or "", name=name, config=config, tags=tags, mode=chosen,  # type: ignore[arg-type]
            url=url, api_key=api_key, spool_dir=spool_dir, interval=flush_interval,
            quiet=notices.quiet_from_env() if quiet is None else quiet, task=task,
            system_interval=choose(system_metrics, system_metrics_interval),
        )  # fmt: skip
    except SafeboardError as exc:
        # The message names the fix; the SDK's own frames would only hide it.
        raise exc.with_traceback(None) from None
