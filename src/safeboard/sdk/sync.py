"""Deliver spooled runs (offline runs, or what a run could not send before it ended)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safeboard.client.credentials import resolve_server
from safeboard.errors import SafeboardError
from safeboard.sdk.delivery import Delivery, Undeliverable
from safeboard.sdk.spool import RunSpool, spooled_runs

__all__ = ["SyncResult", "sync_all"]


@dataclass
class SyncResult:
    run_id: str
    name: str
    points: int = 0
    dropped: int = 0
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
