"""Where the ``SummaryWriter`` drop-in puts what is not a scalar: histograms, images and
texts into the run's series per key (``run.log_histogram``, ``run.log_image(key, image,
step)``, ``run.log_text``); files (embeddings, PR curves, audio, video, graphs, layouts)
as artifacts written to the run's spool directory first (they upload from there, and
``safeboard sync`` finds them).

A kind of data stored in a lesser form than asked says so once, on stderr.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from safeboard.ids import new_id
from safeboard.sdk import notices
from safeboard.sdk.run import ArtifactKind, Run

__all__ = ["WriterMedia"]

HISTOGRAM_TABLE = "histograms/writer.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WriterMedia:
    """One writer's histograms, images, texts and files, for one run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._told: set[str] = set()

    def notice_once(self, what: str, line: str) -> None:
        if what not in self._told:
            self._told.add(what)
            notices.say(line)

    def histogram(self, tag: str, buckets: dict[str, Any], step: int | None) -> None:
        self.run.log_histogram(tag, counts=buckets["counts"], edges=buckets["edges"], step=step)

    def image(self, tag: str, pixels: np.ndarray, step: int | None) -> None:
        self.run.log_image(tag, pixels, step)

    def text(self, tag: str, text: str, step: int | None) -> None:
        self.run.log_text(tag, text, step)

    def file(
        self, name: str, data: bytes, kind: ArtifactKind = "file", step: int | None = None
    ) -> None:
        """Keep ``data`` as the artifact ``name`` (written to the spool, uploaded from it)."""
        path = self.run.spool.path / f"writer-{new_id()}-{_UNSAFE.sub('_', name)[-80:]}"
        self.run.spool.write_file(path, data)
        self.run.log_artifact(path, name, kind, step=step)
