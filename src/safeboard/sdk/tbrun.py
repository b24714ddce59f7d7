"""One TensorBoard run (a directory of event files) brought into one safeboard run.

What each summary becomes:

- scalars: metric points (step, the event's wall time, value) through the normal batched
  ingest. A batch holds the records of one file between two cuts, and its id comes from
  the run, the file's name and the cuts' byte offsets (``tbbatch.batch_id_for``). Cuts fall at
  fixed byte windows of the file (``WINDOW``) and where an earlier import stopped reading
  (a file still being written: :class:`CutLedger` remembers those), so importing a file
  again sends the same batches, which the server stores once (R1).
- images: image artifacts (the server's raster allow-list and sniffing apply, S12), with
  upload ids from file and offset: imported once.
- text: the run's notes, as plain text (the dashboard shows notes as text, never HTML or
  markdown: event files are untrusted input).
- hparams: merged into the run's config.
- histograms: a JSON Lines artifact per event file (``histograms/<file>.jsonl``, kind
  table): one line per histogram, ``{"tag", "step", "wall_time", "limits", "counts",
  "min", "max", "num", "sum", "sum_squares"}``, for the histogram view to come.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from safeboard import wire
from safeboard.client.artifacts import upload_file
from safeboard.client.typed import Client
from safeboard.documents import MAX_NOTES_CHARS
from safeboard.errors import BadRequest, PayloadTooLarge
from safeboard.eventfiles import CorruptRecord, RecordReader, decode_event
from safeboard.eventfiles.bulk import plain_scalars
from safeboard.eventfiles.events import Histogram, Hparams, Image, Scalar, Text
from safeboard.eventfiles.records import Block
from safeboard.eventfiles.wireformat import DecodeError
from safeboard.logdirs import CutLedger
from safeboard.sdk.tbbatch import BatchPoster, PendingBatch
from safeboard.sdk.tbhist import send_histograms
from safeboard.sdk.tbruns import is_event_file

__all__ = ["WINDOW", "Counts", "EventFileState", "RunImport", "is_event_file"]

WINDOW = 2 << 20  # bytes of event file per metric batch (about 50,000 scalars)


def _upload_id(run_id: str, *parts: object) -> str:
    joined = "\0".join([run_id, "tensorboard", *map(str, parts)])
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:48]


@dataclass
class EventFileState:
    """How far one file has been read, and what it gave that is kept until sent."""

    path: Path
    reader: RecordReader
    plugins: dict[str, str] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)  # metric keys by id, for batches
    histograms: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the file stopped at a corrupt record (said once)


@dataclass
class Counts:
    points: int = 0
    images: int = 0
    texts: int = 0
    histograms: int = 0
    hparams: int = 0
    errors: list[str] = field(default_factory=list)


class RunImport:
    """Reads the event files of ``directory`` into run ``run_id``: ``pass_()`` reads
    what is there now (call it again to follow), ``close()`` sends what is kept."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        directory: Path,
        *,
        recursive: bool = False,
        prefix: Callable[[Path], str] = lambda _: "",
        say: Callable[[str], None] = lambda _: None,
        ledger: CutLedger | None = None,
    ) -> None:
        self.client, self.run_id, self.directory = client, run_id, directory
        self.ledger = ledger or CutLedger(None)
        self.recursive, self.prefix, self.say = recursive, prefix, say
        self.files: dict[Path, EventFileState] = {}
        self.counts = Counts()
        self._texts: list[str] = []
        self._text_chars = 0  # of the texts kept: none is kept past what the notes hold
        self._config: dict[str, Any] = {}
        self._sent: tuple[int, int] = (0, 0)  # texts and hparams sent so far
        self._poster = BatchPoster(client, run_id, self._counted)

    def _event_files(self) -> list[Path]:
        found = self.directory.rglob("*") if self.recursive else self.directory.iterdir()
        return sorted(p for p in found if is_event_file(p))

    def _reader(self, path: Path) -> RecordReader:
        return RecordReader(path)

    def pass_(self) -> bool:
        """Read every file from where it stopped; True when anything new was read."""
        news = False
        for path in self._event_files():
            state = self.files.get(path)
            if state is None:
                state = self.files[path] = EventFileState(path, self._reader(path))
            if state.error is None:
                news |= self._read(state)
        self._send_documents()
        return news

    def _read(self, state: EventFileState) -> bool:
        """Read one file from where it stopped, sending a batch at each cut. When sending
        fails, the file is read again from the same place next time (the batches already
        sent have the same ids then, and images the same upload ids)."""
        start = state.reader.offset
        kept = (len(self._texts), len(state.histograms), self._text_chars)
        counts = dataclasses.replace(self.counts, errors=list(self.counts.errors))
        try:
            return self._read_from(state, start)
        except BaseException:
            self._poster.abandon()  # its threads end: a server outlives failed imports
            state.reader.offset = start
            del self._texts[kept[0] :], state.histograms[kept[1] :]
            self._text_chars = kept[2]
            self.counts.__dict__.update(counts.__dict__)  # (the object is shared: updated)
            raise

    def _read_from(self, state: EventFileState, start: int) -> bool:
        reader = state.reader
        batch = PendingBatch(start, state.keys)
        try:
            # The first block reaches just past the first cut: the first batch leaves
            # after half the reading a whole block takes (P7: the server waits for it).
            for block in reader.blocks(first=WINDOW - start % WINDOW + (64 << 10)):
                batch = self._block(state, block, batch)
        except CorruptRecord as exc:
            state.error = str(exc)
            self.counts.errors.append(state.error)
            self.say(f"{state.error}; going on with the next file")
        end = reader.offset
        if end > batch.start:  # a cut where this pass stopped: remembered first, so
            self.ledger.add(state.path.name, end)  # that a later import cuts there too
            self._send(state, batch, end)
        self._poster.join()
        return end > start

    def _block(self, state: EventFileState, block: Block, batch: PendingBatch) -> PendingBatch:
        """The block's records into batches: a batch is sent at each cut it holds."""
        offsets = block.base + block.starts
        plain = plain_scalars(block)  # decoded once for the block, taken a span at a time
        prefix = self.prefix(state.path)
        names = [state.keys.setdefault(prefix + t, len(state.keys)) for t in plain.tags]
        tag_ids = np.array(names, dtype=np.int64)[plain.tag_of] if names else plain.tag_of
        first = 0
        while first < len(block):
            cut = self.ledger.next_cut(state.path.name, batch.start, WINDOW)
            stop = int(np.searchsorted(offsets, cut))
            begin, end = np.searchsorted(plain.index, (first, stop))
            span = slice(int(begin), int(end))
            batch.add(offsets[plain.index[span]], tag_ids[span], plain.steps[span],
                      plain.times[span], plain.values[span])  # fmt: skip
            for i in np.flatnonzero(~plain.found[first:stop]) + first:
                self._record(state, int(offsets[i]), block.record(int(i)), batch, prefix)
            if stop >= len(block):
                break
            self._send(state, batch, int(offsets[stop]))
            batch = PendingBatch(int(offsets[stop]), state.keys)
            first = stop
        return batch

    def _record(
        self, state: EventFileState, offset: int, data: bytes, batch: PendingBatch, prefix: str
    ) -> None:
        try:
            event = decode_event(data, state.plugins)
        except DecodeError as exc:
            problem = f"{state.path}: record at byte offset {offset} is not an event ({exc})"
            self.counts.errors.append(problem)
            self.say(f"{problem}; skipped")
            return
        step = event.step
        if not 0 <= step <= wire.MAX_STEP:
            return
        for index, item in enumerate(event.items):
            if isinstance(item, Scalar):
                batch.add_point(offset, prefix + item.tag, step, event.wall_time, item.value)
            elif isinstance(item, Image):
                self._image(state, offset, index, step, item)
            elif isinstance(item, Text):
                if self._text_chars <= MAX_NOTES_CHARS:  # (the notes are cut there anyway)
                    text = f"{prefix}{item.tag} (step {step}):\n{item.text}"
                    self._texts.append(text)
                    self._text_chars += len(text) + 2
                self.counts.texts += 1
            elif isinstance(item, Hparams):
                self._config.update(item.values)
                self.counts.hparams += 1
            elif isinstance(item, Histogram):
                row = _histogram_row(prefix + item.tag, step, event.wall_time, item)
                state.histograms.append(row)
                self.counts.histograms += 1

    def _send(self, state: EventFileState, batch: PendingBatch, end: int) -> None:
        for _, body, points in batch.bodies(self.run_id, state.path.name, end):
            self._poster.post(body, points)

    def _counted(self, points: int) -> None:
        self.counts.points += points

    def _image(
        self, state: EventFileState, offset: int, index: int, step: int, image: Image
    ) -> None:
        suffix = _image_suffix(image.encoded)
        name = f"{self.prefix(state.path)}{image.tag}/step-{step}{suffix}"
        with tempfile.TemporaryDirectory(prefix="safeboard-tb-") as tmp:
            path = Path(tmp) / f"image{suffix}"
            path.write_bytes(image.encoded)
            try:
                self.client.retry.call(partial(  # the same upload id: resumed, never twice
                    upload_file, self.client.api, self.run_id, path, name=name, kind="image",
                    step=step, upload_id=_upload_id(self.run_id, state.path.name, offset, index),
                ))  # fmt: skip
            except (BadRequest, PayloadTooLarge) as exc:  # this image alone: the file goes on
                problem = f"{state.path}: image at byte offset {offset} refused: {exc.message}"
                self.counts.errors.append(problem)
                self.say(problem)
                return
        self.counts.images += 1

    def _send_documents(self) -> None:
        """Texts become the notes (whole, as text), hparams the config (merged)."""
        if self._sent == (len(self._texts), self.counts.hparams):
            return
        self._sent = (len(self._texts), self.counts.hparams)
        notes = None
        if self._texts:
            notes = "\n\n".join(self._texts)
            if len(notes) > MAX_NOTES_CHARS:
                cut = "\n[... cut: the texts are longer than the notes may be]"
                notes = notes[: MAX_NOTES_CHARS - len(cut)] + cut
        if notes is not None or self._config:
            self.client.update_run(self.run_id, notes=notes, config=self._config or None)

    def close(self) -> None:
        """Upload each file's histograms (an artifact per file, the same content once) and
        send them as the run's histograms per step (sdk/tbhist.py)."""
        for state in self.files.values():
            if not state.histograms:
                continue
            lines = "".join(json.dumps(row, allow_nan=True) + "\n" for row in state.histograms)
            content = lines.encode()
            digest = hashlib.sha256(content).hexdigest()
            with tempfile.TemporaryDirectory(prefix="safeboard-tb-") as tmp:
                path = Path(tmp) / "histograms.jsonl"
                path.write_bytes(content)
                self.client.retry.call(partial(
                    upload_file, self.client.api, self.run_id, path, kind="table",
                    name=f"histograms/{self.prefix(state.path)}{state.path.name}.jsonl",
                    upload_id=_upload_id(self.run_id, state.path.name, "histograms", digest),
                ))  # fmt: skip
            # ... and into the run's histograms per step: the run page's distribution view
            send_histograms(self.client, self.run_id, state.histograms, digest)


def _histogram_row(tag: str, step: int, wall_time: float, item: Histogram) -> dict[str, Any]:
    def number(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {
        "tag": tag, "step": step, "wall_time": wall_time, "limits": item.limits,
        "counts": item.counts, "min": number(item.min), "max": number(item.max),
        "num": number(item.num), "sum": number(item.sum), "sum_squares": number(item.sum_squares),
    }  # fmt: skip


def _image_suffix(encoded: bytes) -> str:
    """A name's extension from the bytes' signature (metadata: the server sniffs again)."""
    if encoded.startswith(b"\x89PNG"):
        return ".png"
    if encoded.startswith(b"\xff\xd8"):
        return ".jpg"
    if encoded.startswith(b"GIF8"):
        return ".gif"
    return ".bin"
