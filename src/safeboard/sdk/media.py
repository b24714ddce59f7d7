"""Histograms and text per step for ``run.log_histogram`` and ``run.log_text`` (issue 17).

Each call makes a small record that goes the way of an artifact record: the sender thread
writes it to the spool, joining it to the records logged just before it into one batch
(``absorb``, at most ``MAX_ENTRIES`` entries and about ``BATCH_BYTES`` of JSON), and the
uploader sends it once the metric batches logged before it are delivered. The record's id
is the batch id: a retry, a restart or ``safeboard sync`` stores it once (R1). What the
server would refuse for good is refused in the call, before anything is queued.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from safeboard.client.http import ApiClient
from safeboard.errors import InvalidRequest
from safeboard.ids import new_id
from safeboard.vocabulary import metric_key_problem
from safeboard.wire import MAX_STEP

__all__ = [
    "DEFAULT_BINS",
    "absorb",
    "histogram_entry",
    "image_call",
    "is_steps",
    "merged_buckets",
    "send_steps",
    "series_name",
    "steps_record",
    "text_entry",
]

DEFAULT_BINS = 64
MAX_BUCKETS = 1024  # the server's (metrics/histograms.py)
MAX_ENTRIES = 1000  # per batch (metrics/step_schemas.py)
MAX_TEXT_CHARS = 65_536
MAX_IMAGE_KEY = 500  # an artifact name's bound
BATCH_BYTES = 4 * 1024 * 1024  # well under the server's 16 MiB body limit
_KIND = "steps"


def _checked_key_step(key: str, step: int) -> None:
    if not isinstance(key, str):
        raise InvalidRequest("key: a string")
    problem = metric_key_problem(key)
    if problem is not None:
        raise InvalidRequest(f"key: {problem}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise InvalidRequest(f"step: an integer from 0 to {MAX_STEP}")


def _floats(data: Any) -> Any:
    import numpy as np  # noqa: PLC0415  (numpy only for those who log histograms)

    if hasattr(data, "detach"):  # a torch tensor, on any device
        data = data.detach().cpu().numpy()
    try:
        return np.asarray(data, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidRequest("histogram: numbers (a list, an array or a tensor)") from None


def histogram_entry(
    key: str, values: Any, *, counts: Any, edges: Any, step: int, when: float, bins: int
) -> dict[str, Any]:
    """Raw ``values`` binned into ``bins`` buckets (NaN and infinities left out), or
    ``counts`` with their ``edges`` as they are; checked as the server checks them."""
    import numpy as np  # noqa: PLC0415

    _checked_key_step(key, step)
    if (values is None) == (counts is None) or (counts is None) != (edges is None):
        raise InvalidRequest("log_histogram: values, or counts with edges")
    if values is not None:
        if not 1 <= bins <= MAX_BUCKETS:
            raise InvalidRequest(f"bins: 1 to {MAX_BUCKETS}")
        raw = _floats(values)
        raw = raw[np.isfinite(raw)]
        if raw.size == 0:
            raise InvalidRequest("log_histogram: no finite values")
        try:
            with np.errstate(all="ignore"):
                counted, bounds = np.histogram(raw, bins=bins)
        except ValueError:
            raise InvalidRequest("values: too far apart to bin (past the float range)") from None
        if not bool(np.all(bounds[1:] > bounds[:-1])):
            raise InvalidRequest("values: too far apart to bin (past the float range)")
        return {"key": key, "step": step, "time": when, "edges": bounds.tolist(),
                "counts": counted.astype(np.float64).tolist()}  # fmt: skip
    c, e = _floats(counts), _floats(edges)
    if c.size == 0:
        raise InvalidRequest("counts: at least one bucket")
    if e.size != c.size + 1:
        raise InvalidRequest("edges: one more than counts (each bucket between two edges)")
    if not bool(np.all(np.isfinite(e))) or not bool(np.all(e[1:] > e[:-1])):
        raise InvalidRequest("edges: finite and strictly increasing")
    if not bool(np.all(np.isfinite(c))) or bool(np.any(c < 0)):
        raise InvalidRequest("counts: finite and at least 0")
    if not math.isfinite(sum(c.tolist())):
        raise InvalidRequest("counts: their sum is finite")
    fitted, summed = merged_buckets(e.tolist(), c.tolist())
    return {"key": key, "step": step, "time": when, "edges": fitted, "counts": summed}


def merged_buckets(edges: list[float], counts: list[float]) -> tuple[list[float], list[float]]:
    """More than ``MAX_BUCKETS`` buckets (TensorBoard's default bucketing of a wide range
    gives about 1,500) merged in pairs until they fit: every count kept, coarser."""
    while len(counts) > MAX_BUCKETS:
        counts = [sum(counts[i : i + 2]) for i in range(0, len(counts), 2)]
        edges = [*edges[::2], *([] if (len(edges) - 1) % 2 == 0 else [edges[-1]])]
    return edges, counts


def series_name(key: Any) -> str:
    """The artifact name of an image series' images: the key (artifacts/series.py)."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IMAGE_KEY:
        raise InvalidRequest(f"key: a string of 1 to {MAX_IMAGE_KEY} characters")
    return key


def image_call(
    key: Any, image: Any, step: int | None, name: str | None, last: int
) -> tuple[Any, int | None, str | None]:
    """``run.log_image``'s two forms: ``(key, image, step)``, an image of a series (its
    artifact is named ``key``), and the earlier ``(image, step, name)``. The image, its
    step (default ``last``, the last ``log()``'s step, if any) and its artifact name."""
    if key is not None and image is not None and not isinstance(image, int):
        return image, (max(last, 0) if step is None else step), series_name(key)
    picture, at = (image, step) if key is None else (key, image if step is None else step)
    return picture, (last if at is None and last >= 0 else at), name


def text_entry(key: str, text: str, step: int, when: float) -> dict[str, Any]:
    _checked_key_step(key, step)
    if not isinstance(text, str):
        raise InvalidRequest("text: a string")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"text: at most {MAX_TEXT_CHARS} characters")
    if "\x00" in text:
        raise InvalidRequest("text: no NUL characters")
    return {"key": key, "step": step, "time": when, "text": text}


def steps_record(*, histogram: dict[str, Any] | None = None,
                 text: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A queued record of one entry; its id becomes the batch id once spooled."""
    return {
        "id": new_id(), "kind": _KIND, "name": "histograms and text", "path": None,
        "spooled_file": None, "histograms": [histogram] if histogram else [],
        "texts": [text] if text else [],
    }  # fmt: skip


def is_steps(record: dict[str, Any]) -> bool:
    return record.get("kind") == _KIND


def _size(record: dict[str, Any]) -> int:
    """About the bytes of the record's JSON (25 per number, the texts' lengths)."""
    numbers = sum(len(h["counts"]) * 2 + 3 for h in record["histograms"])
    return 25 * numbers + sum(len(t["text"]) * 2 + 100 for t in record["texts"])


def absorb(record: dict[str, Any], waiting: deque[dict[str, Any]]) -> None:
    """Join the step records right behind ``record`` in ``waiting`` to it (taken from the
    queue), up to a batch's bounds: one request for many ``log_histogram`` calls."""
    entries = len(record["histograms"]) + len(record["texts"])
    size = _size(record)
    while waiting and is_steps(waiting[0]):
        following = waiting[0]
        more = len(following["histograms"]) + len(following["texts"])
        grown = _size(following)
        if entries + more > MAX_ENTRIES or size + grown > BATCH_BYTES:
            return
        waiting.popleft()
        record["histograms"] += following["histograms"]
        record["texts"] += following["texts"]
        entries += more
        size += grown


def send_steps(client: ApiClient, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Send a spooled record: stored once, however often it is sent."""
    body = {"batch_id": record["id"], "histograms": record["histograms"],
            "texts": record["texts"]}  # fmt: skip
    answer: dict[str, Any] = client.post(f"/api/v1/runs/{run_id}/steps", json=body).json()
    return answer
