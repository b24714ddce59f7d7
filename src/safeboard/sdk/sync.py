"""Deliver spooled runs (offline runs, or what a run could not send before it ended)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from safeboard.client.credentials import resolve_server
from safeboard.errors import InvalidRequest, NotFound, SafeboardError
from safeboard.sdk.connection import Connection
from safeboard.sdk.delivery import Delivery, Undeliverable, retryable
from safeboard.sdk.notices import error_record, say
from safeboard.sdk.spool import RunSpool, SpoolLocked, spooled_runs
from safeboard.sdk.uploads import refused_for_good, upload_record

__all__ = ["SyncResult", "discard", "find_spooled", "sync_all"]


@dataclass
class SyncResult:
    run_id: str
    name: str
    points: int = 0
    dropped: int = 0
    artifacts: int = 0
    dropped_artifacts: int = 0
    done: bool = False
    error: str | None = None
    pending_points: int = 0  # left in the spool when delivery failed
    pending_artifacts: int = 0
    writer: int | None = None  # the pid of the script still writing the run: left alone
    orphaned: bool = False  # its script died without finishing it: marked failed


def sync_run(
    spool: RunSpool,
    url: str | None,
    api_key: str | None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> SyncResult:
    """Send one spooled run, holding its lock: a run whose script is still alive (it holds
    the lock) is left to that script, untouched. A run still "running" whose script took
    the lock and is gone (killed: no finish, no exit hook) is marked failed."""
    locked_before = spool.lock_path.exists()
    try:
        spool.lock()
    except SpoolLocked as locked:
        meta = spool.read_meta()
        result = SyncResult(meta["id"], meta["name"], writer=locked.pid)
        result.pending_points = spool.pending_points()
        result.pending_artifacts = len(spool.pending_artifacts())
        return result
    try:
        return _sync_locked(spool, url, api_key, orphaned=locked_before, transport=transport)
    finally:
        spool.unlock()


def _sync_locked(
    spool: RunSpool,
    url: str | None,
    api_key: str | None,
    *,
    orphaned: bool,
    transport: httpx.BaseTransport | None,
) -> SyncResult:
    meta = spool.read_meta()  # read under the lock: no script writes it any more
    result = SyncResult(meta["id"], meta["name"])
    if orphaned and meta["status"] == "running":
        meta["status"] = "failed"
        result.orphaned = True
    try:
        access = resolve_server(url or meta.get("url"), api_key)
    except SafeboardError as exc:
        return _failed(spool, meta, result, exc)
    connection = Connection(access, transport)
    delivery = Delivery(connection.client, meta, renew=connection.renewed)
    try:
        for path, batch in spool.batches():
            points = batch.points
            try:
                delivery.send(batch)
                result.points += points
            except Undeliverable:
                result.dropped += points
            path.unlink(missing_ok=True)
            spool.write_meta(meta)  # remembers that the run now exists on the server
        delivery.ensure_run()
        spool.write_meta(meta)
        _upload_artifacts(spool, delivery, result)
        if meta["status"] != "running":
            delivery.finish(meta["status"])
            spool.remove()
            result.done = True
        else:
            meta.pop("last_error", None)
            spool.write_meta(meta)
    except SafeboardError as exc:
        _failed(spool, meta, result, exc)
    finally:
        delivery.close()
    return result


def _failed(
    spool: RunSpool, meta: dict[str, object], result: SyncResult, exc: SafeboardError
) -> SyncResult:
    """Say why, and keep a cause that needs the user in run.json (``last_error``)."""
    result.error = exc.message
    result.pending_points = spool.pending_points()
    result.pending_artifacts = len(spool.pending_artifacts())
    if not retryable(exc):
        meta["last_error"] = error_record(exc)
        spool.write_meta(meta)
    return result


def _upload_artifacts(spool: RunSpool, delivery: Delivery, result: SyncResult) -> None:
    """Upload the run's spooled artifacts; each resumes where an earlier try stopped."""
    for path, record in spool.artifacts():
        try:
            upload_record(delivery.client.api, spool, result.run_id, record)
            result.artifacts += 1
        except SafeboardError as exc:
            if not refused_for_good(exc):
                raise
            result.dropped_artifacts += 1
            say(f"artifact {record['name']!r} of run {result.run_id} not uploaded: {exc.message}")
        spool.drop_artifact(path, record)


def sync_all(
    root: Path | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    progress: Callable[[SyncResult], None] = lambda _: None,
    transport: httpx.BaseTransport | None = None,
) -> list[SyncResult]:
    """Send every spooled run; ``transport`` (tests) carries the requests instead of the
    network, as ``httpx.Client(transport=...)`` does."""
    results = []
    for spool in spooled_runs(root):
        result = sync_run(spool, url, api_key, transport=transport)
        progress(result)
        results.append(result)
    return results


def find_spooled(ref: str, root: Path | None = None) -> RunSpool:
    """The spooled run named by ``ref``: its id, a unique prefix of it, or its name."""
    runs = spooled_runs(root)
    exact = [spool for spool in runs if spool.path.name == ref]
    if exact:
        return exact[0]
    matches = [spool for spool in runs if ref and spool.path.name.startswith(ref)]
    if not matches:
        matches = [spool for spool in runs if _name_of(spool) == ref]
    if not matches:
        raise NotFound(f"no spooled run {ref!r}: `safeboard sync` lists them")
    if len(matches) > 1:
        listed = ", ".join(f"{_name_of(spool)} ({spool.path.name})" for spool in matches)
        raise InvalidRequest(f"{ref!r} names {len(matches)} spooled runs ({listed}): give an id")
    return matches[0]


def _name_of(spool: RunSpool) -> str:
    try:
        return str(spool.read_meta().get("name", ""))
    except (OSError, ValueError):
        return ""


def discard(spool: RunSpool) -> None:
    """Delete a spooled run for good; refused (SpoolLocked) while its script still runs."""
    spool.lock()
    try:
        spool.remove()
    finally:
        spool.unlock()
