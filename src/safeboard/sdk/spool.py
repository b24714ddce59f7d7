"""The disk spool: what a run has not delivered yet, so that training never waits for the
server and nothing is lost when it is away (R2).

``<spool>/<run_id>/run.json`` holds the run (server URL, project, name, config, tags,
status, whether the server has it); ``batch-<n>-<batch_id>.sbc`` files hold metric
batches in order, each the packed body it is posted as (``safeboard.wire``: its first
bytes, ``SBC1``, say the format and its version); ``batch-<n>-<batch_id>.json`` files, the
JSON form an earlier SDK spooled, are still read and delivered (``sdk/batches.py``);
``artifact-<n>-<id>.json`` files hold artifacts to upload (the file's path, name, kind,
step), and ``image-<id>.png`` the images logged as arrays. Files are written atomically,
0600, in a 0700 directory.
``safeboard sync`` delivers what is left.

``lock`` is held (``flock``) by whoever writes the run: its training script from ``init()``
until it ends (the kernel releases it when the process dies), or ``safeboard sync`` while
it sends the run. Nobody else touches a locked run's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safeboard.client.config import write_private
from safeboard.errors import Conflict
from safeboard.sdk.batches import Batch
from safeboard.userdirs import spool_root
from safeboard.words import count

__all__ = ["RunSpool", "SpoolLocked", "spool_root", "spooled_runs"]

LOCK_NAME = "lock"
PACKED = ".sbc"  # a batch spooled as its packed body (JSON before)


class SpoolLocked(Conflict):
    """Another process (``pid``: 0 when unknown) writes this run: its training script."""

    def __init__(self, run_id: str, pid: int) -> None:
        by = f"its script (pid {pid})" if pid else "its script"
        super().__init__(f"run {run_id} is still being written by {by}")
        self.pid = pid


def _write(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data, separators=(",", ":"), allow_nan=False).encode())


class RunSpool:
    """The spool directory of one run."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.path = root / run_id
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock: int | None = None
        self._next = 1 + max((self._number(p) for p in self._batch_files()), default=0)
        self._next_artifact = 1 + max((self._number(p) for p in self._artifact_files()), default=0)

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.name.split("-")[1])

    def _batch_files(self) -> list[Path]:
        found = [p for p in self.path.glob("batch-*") if p.suffix in (PACKED, ".json")]
        return sorted(found, key=self._number)

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    def read_meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.meta_path.read_text(encoding="utf-8"))
        return data

    def write_meta(self, meta: dict[str, Any]) -> None:
        _write(self.meta_path, meta)

    def add_batch(self, batch: Batch) -> Path:
        path = self.path / f"batch-{self._next:09d}-{batch.batch_id}{PACKED}"
        self._next += 1
        write_private(path, batch.parts)  # as packed: the C writer joins nothing (batches.py)
        return path

    def batches(self) -> Iterator[tuple[Path, Batch]]:
        """Spooled batches, oldest first (those that vanished meanwhile skipped)."""
        for path in self._batch_files():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if path.suffix == PACKED:
                yield path, Batch.from_body(data)
            else:  # spooled by an earlier SDK
                yield path, Batch.from_json(json.loads(data))

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def lock(self) -> None:
        """Hold this run's lock until :meth:`unlock` or the process ends; raises
        SpoolLocked when another process holds it."""
        if self._lock is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(self.path.name, self.holder() or 0) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            fd, self._lock = self._lock, None
            try:  # released explicitly: a forked child (a data loader) may share the fd
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def holder(self) -> int | None:
        """The pid of the process holding this run's lock (0: unknown), or None."""
        if self._lock is not None:
            return os.getpid()
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def pending_points(self) -> int:
        return sum(batch.points for _, batch in self.batches())

    def _artifact_files(self) -> list[Path]:
        return sorted(self.path.glob("artifact-*.json"), key=self._number)

    def add_artifact(self, record: dict[str, Any]) -> Path:
        """Spool an artifact to upload; ``record["id"]`` names it (hex)."""
        path = self.path / f"artifact-{self._next_artifact:09d}-{record['id']}.json"
        self._next_artifact += 1
        _write(path, record)
        return path

    def artifacts(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Spooled artifacts, oldest first (those whose record vanished meanwhile skipped)."""
        for path in self._artifact_files():
            try:
                yield path, json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue

    def artifact_number(self, path: Path) -> int:
        return self._number(path)

    def artifact_numbers(self) -> list[int]:
        """The spooled artifacts' numbers, oldest first (from the file names alone)."""
        return [self._number(path) for path in self._artifact_files()]

    def image_path(self, artifact_id: str) -> Path:
        """Where an image logged as an array is kept until it is uploaded."""
        return self.path / f"image-{artifact_id}.png"

    def write_file(self, path: Path, data: bytes) -> None:
        """Write a spooled file atomically, 0600."""
        write_private(path, data)

    def drop_artifact(self, path: Path, record: dict[str, Any]) -> None:
        """Forget a spooled artifact (uploaded, or refused for good), and its image."""
        if record.get("spooled_file"):
            (self.path / str(record["spooled_file"])).unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def pending_artifacts(self) -> list[dict[str, Any]]:
        return [record for _, record in self.artifacts()]

    def remove(self) -> None:
        """Delete the spool once everything is delivered and the run is final (or the run
        could not start, or it is discarded)."""
        if not self.path.is_dir():
            return
        for path in self.path.iterdir():
            path.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.rmdir()

    def undelivered(self, points: int, files: list[dict[str, Any]], status: str) -> str:
        """What is left, zero counts left out ("3 points and 1 artifact (2.0 MB)"); with
        nothing left, the run itself (its creation, or its final status)."""
        said = [count(points, "point")] if points else []
        if files:
            size = 0
            for record in files:
                with contextlib.suppress(OSError, TypeError):
                    size += (self.path / (record["path"] or record["spooled_file"])).stat().st_size
            said.append(count(len(files), "artifact") + (f" ({size / 1e6:.1f} MB)" if size else ""))
        return " and ".join(said) or f"the run and its status ({status})"


def spooled_runs(root: Path | None = None) -> list[RunSpool]:
    base = root or spool_root()
    if not base.is_dir():
        return []
    return [RunSpool(base, p.name) for p in sorted(base.iterdir()) if (p / "run.json").exists()]
