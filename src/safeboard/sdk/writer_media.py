"""Where the ``SummaryWriter`` drop-in puts what is not a scalar: through the run's keyed
series (``run.log_histogram``, ``run.log_image(key, image, step)``, ``run.log_text``) when
this SDK has them, else as today's artifacts and notes:

- histograms: one JSON Lines table artifact, ``histograms/writer.jsonl``, written at
  ``close()`` (the lines of ``sync_tensorboard``'s tables: tag, step, wall_time, limits,
  counts, min, max, num, sum, sum_squares);
- images: image artifacts named ``<tag>/<step>.png``;
- texts: the run's notes, a section per tag (the latest text of a tag wins);
- files (embeddings, PR curves, audio, video, graphs, layouts): artifacts written to the
  run's spool directory first (they upload from there, and ``safeboard sync`` finds them).

A kind of data stored in a lesser form than asked says so once, on stderr.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from typing import Any

import numpy as np

from safeboard.documents import MAX_NOTES_CHARS
from safeboard.ids import new_id
from safeboard.sdk import notices
from safeboard.sdk.run import ArtifactKind, Run

__all__ = ["WriterMedia"]

HISTOGRAM_TABLE = "histograms/writer.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _keyed(method: Any, first: str) -> bool:
    """Whether a Run method takes a key first (the keyed series) rather than today's form."""
    if method is None:
        return False
    try:
        names = list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return False
    return bool(names) and names[0] == first


class WriterMedia:
    """One writer's histograms, images, texts and files, for one run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._histogram = getattr(run, "log_histogram", None)
        self._image_keyed = _keyed(getattr(run, "log_image", None), "key")
        self._text = getattr(run, "log_text", None)
        self._rows: list[str] = []  # histogram lines, without the series
        self._notes: dict[str, str] = {}
        self._told: set[str] = set()

    def notice_once(self, what: str, line: str) -> None:
        if what not in self._told:
            self._told.add(what)
            notices.say(line)

    def histogram(self, tag: str, buckets: dict[str, Any], step: int | None) -> None:
        if self._histogram is not None:
            self._histogram(tag, counts=buckets["counts"], edges=buckets["edges"], step=step)
            return
        row = {
            "tag": tag, "step": step, "wall_time": time.time(), "limits": buckets["edges"][1:],
            "counts": buckets["counts"],
            **{k: buckets[k] for k in ("min", "max", "num", "sum", "sum_squares")},
        }  # fmt: skip
        self._rows.append(json.dumps(row))

    def image(self, tag: str, pixels: np.ndarray, step: int | None) -> None:
        if self._image_keyed:
            self.run.log_image(tag, pixels, step)  # type: ignore[arg-type]  # after issue 17's keyed series
            return
        label = f"{tag}/{step if step is not None else 'image'}.png"
        self.run.log_image(pixels, step, label)

    def text(self, tag: str, text: str, step: int | None) -> None:
        if self._text is not None:
            self._text(tag, text, step)
            return
        self._notes[tag] = text
        notes = "\n\n".join(f"## {t}\n{body}" for t, body in self._notes.items())
        if len(notes) > MAX_NOTES_CHARS:
            cut = "\n[... cut: the texts are longer than the notes may be]"
            notes = notes[: MAX_NOTES_CHARS - len(cut)] + cut
        self.run.set_notes(notes)

    def file(
        self, name: str, data: bytes, kind: ArtifactKind = "file", step: int | None = None
    ) -> None:
        """Keep ``data`` as the artifact ``name`` (written to the spool, uploaded from it)."""
        path = self.run.spool.path / f"writer-{new_id()}-{_UNSAFE.sub('_', name)[-80:]}"
        self.run.spool.write_file(path, data)
        self.run.log_artifact(path, name, kind, step=step)

    def close(self) -> None:
        """The histogram table, when histograms had no series of their own."""
        if self._rows:
            body = "".join(row + "\n" for row in self._rows).encode()
            self.file(HISTOGRAM_TABLE, body, "table")
            self._rows = []
