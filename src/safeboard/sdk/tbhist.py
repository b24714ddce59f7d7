"""Imported TensorBoard histograms into the run's histograms per step (issue 17), so the
run page's distribution view shows them; the importer keeps its ``histograms/*.jsonl``
artifact too (every field as written: min, max, sum, sum of squares).

A ``HistogramProto`` gives each bucket's right edge (``limits``); the first bucket starts
at ``min`` and the last, whose limit is often ``DBL_MAX``, ends at ``max``. More than
1,024 buckets are merged in pairs until they fit. Batch ids come from the event file's
content, so an import run again stores nothing twice (R1).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from safeboard.errors import BadRequest, PayloadTooLarge
from safeboard.sdk.media import MAX_ENTRIES, merged_buckets

if TYPE_CHECKING:
    from safeboard.client.typed import Client

__all__ = ["send_histograms", "to_entry"]

_HUGE = 1e300  # a limit past this is TensorBoard's open end (DBL_MAX), not a value


def to_entry(row: dict[str, Any]) -> dict[str, Any] | None:
    """One imported histogram (tbrun's row) as the API takes it; None if it has no buckets
    or its edges cannot be made finite and increasing."""
    limits = [float(x) for x in row["limits"]]
    counts = [float(x) for x in row["counts"]]
    if not counts or len(limits) != len(counts) or not all(math.isfinite(c) for c in counts):
        return None
    low, high = (math.nan if v is None else float(v) for v in (row.get("min"), row.get("max")))
    width = limits[1] - limits[0] if len(limits) > 1 and abs(limits[1]) < _HUGE else 1.0
    first = low if math.isfinite(low) and low < limits[0] else None
    if abs(limits[-1]) >= _HUGE:  # the open end: where the values end
        inner = limits[-2] if len(limits) > 1 else None
        fine = math.isfinite(high) and (inner is None or high > inner)
        limits[-1] = high if fine else (inner + width if inner is not None else 0.0)
    edges = [first if first is not None else limits[0] - abs(width), *limits]
    increasing = all(b > a for a, b in itertools.pairwise(edges))
    if not increasing or not all(math.isfinite(e) for e in edges):
        return None
    edges, counts = merged_buckets(edges, counts)
    return {"key": row["tag"], "step": int(row["step"]), "time": float(row["wall_time"]),
            "edges": edges, "counts": [max(c, 0.0) for c in counts]}  # fmt: skip


def _batches(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    size = 0
    batch: list[dict[str, Any]] = []
    for entry in entries:
        grown = 50 * len(entry["counts"]) + 100
        if batch and (len(batch) >= MAX_ENTRIES or size + grown > 4_000_000):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += grown
    if batch:
        yield batch


def send_histograms(client: Client, run_id: str, rows: list[dict[str, Any]], source: str) -> int:
    """Send an event file's histograms; ``source`` names its content (the same content:
    the same batch ids, so a batch is sent again under the client's retry policy when the
    server is busy or away). The number left out: not convertible, or refused."""
    entries = [entry for entry in map(to_entry, rows) if entry is not None]
    left_out = len(rows) - len(entries)
    for number, batch in enumerate(_batches(entries)):
        batch_id = hashlib.sha256(f"{run_id}:{source}:{number}".encode()).hexdigest()[:40]
        body = {"batch_id": batch_id, "histograms": batch, "texts": []}
        try:
            client.send("POST", f"/api/v1/runs/{run_id}/steps", json=body, idempotent=True)
        except (BadRequest, PayloadTooLarge):  # these alone: the import goes on
            left_out += len(batch)
    return left_out
