"""Deliver spooled runs (offline runs, or what a run could not send before it ended)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safeboard.client.credentials import resolve_server
from safeboard.errors import SafeboardError
from safeboard.sdk.delivery import Delivery, Undeliverable
from safeboard.sdk.spool import RunSpool, spooled_runs
from safeboard.sdk.uploads import refused_for_good, upload_record

__all__ = ["SyncResult", "sync_all"]

log = logging.getLogger("safeboard.sdk")


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


def sync_run(spool: RunSpool, url: str | None, api_key: str | None) -> SyncResult:
    meta = spool.read_meta()
    result = SyncResult(meta["id"], meta["name"])
    access = resolve_server(url or meta.get("url"), api_key)
    delivery = Delivery(access.client, meta)
    try:
        for path, batch in spool.batches():
            points = sum(len(c["steps"]) for c in batch["metrics"].values())
            try:
                delivery.send(batch)
                result.points += points
            except Undeliverable:
                result.dropped += points
            path.unlink()
            spool.write_meta(meta)  # remembers that the run now exists on the server
        delivery.ensure_run()
        spool.write_meta(meta)
        _upload_artifacts(spool, delivery, result)
        if meta["status"] != "running":
            delivery.finish(meta["status"])
            spool.remove()
            result.done = True
        else:
            spool.write_meta(meta)
    except SafeboardError as exc:
        result.error = exc.message
    finally:
        delivery.close()
    return result


def _upload_artifacts(spool: RunSpool, delivery: Delivery, result: SyncResult) -> None:
    """Upload the run's spooled artifacts; each resumes where an earlier try stopped."""
    for path, record in spool.artifacts():
        try:
            upload_record(delivery.client, spool, result.run_id, record)
            result.artifacts += 1
        except SafeboardError as exc:
            if not refused_for_good(exc):
                raise
            result.dropped_artifacts += 1
            log.warning("artifact %r not uploaded: %s", record["name"], exc.message)
        spool.drop_artifact(path, record)


def sync_all(
    root: Path | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    progress: Callable[[SyncResult], None] = lambda _: None,
) -> list[SyncResult]:
    results = []
    for spool in spooled_runs(root):
        result = sync_run(spool, url, api_key)
        progress(result)
        results.append(result)
    return results
