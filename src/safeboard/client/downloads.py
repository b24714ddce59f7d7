"""Artifact downloads, shared by the SDK and the CLI: streamed to disk (never a whole file in
memory), resumable, checked by SHA-256, and never written through a link (S12).

Stream into ``<dest>.part``; when a partial file of this client is there already, ask only
for the rest (``Range`` with ``If-Range`` on the SHA-256 ETag, so a part of another version
is replaced by the whole file); check the SHA-256 of the whole; then move it into place
atomically, never over an existing file unless asked. How the files are opened, checked
and moved, so that a planted link or someone else's file is never written: ``partfile.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeboard.client import paths
from safeboard.client.artifacts import (
    MAX_FAILURES,
    READ_SIZE,
    TIMEOUT,
    Progress,
    TransferStopped,
    backoff,
    safe_filename,
)
from safeboard.client.http import ApiClient
from safeboard.client.partfile import Folder, PartFile, UnsafeDownloadPath
from safeboard.errors import ConfigError, Conflict, SafeboardError, ServiceUnavailable

__all__ = ["UnsafeDownloadPath", "download"]


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def _destination(dest: Path | str | None, artifact: dict[str, Any]) -> Path:
    filename = safe_filename(str(artifact["name"]), fallback=str(artifact["id"]))
    if dest is None:
        return Path.cwd() / filename
    chosen = Path(dest).expanduser()
    if chosen.is_dir():  # a directory the person names (a link to one is theirs to make)
        return chosen / filename
    return chosen


def download(
    client: ApiClient,
    artifact_id: str,
    dest: Path | str | None = None,
    *,
    overwrite: bool = False,
    progress: Progress = _no_progress,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download an artifact to ``dest`` (a file, or a directory to put it in under its
    name; default: its name in the current directory) and return the path written."""
    artifact: dict[str, Any] = client.get(paths.artifact(artifact_id)).json()
    if artifact["state"] != "ready":
        raise Conflict(
            f"artifact {artifact_id} is still uploading ({artifact['received']} of "
            f"{artifact['size']} bytes); run its upload again to finish it"
        )
    target = _destination(dest, artifact)
    with Folder(target.parent) as folder:
        folder.check_free(target.name, overwrite=overwrite)
        transfer = _Transfer(client, artifact_id, folder, target.name + ".part", artifact)
        try:
            transfer.run(progress, stop, sleep).place(target.name, overwrite=overwrite)
        finally:
            transfer.close()
    return target


class _Transfer:
    """One download into its partial file, resumed from what an earlier run left."""

    def __init__(
        self,
        client: ApiClient,
        artifact_id: str,
        folder: Folder,
        part_name: str,
        artifact: dict[str, Any],
    ) -> None:
        self.client, self.artifact_id = client, artifact_id
        self.folder, self.part_name = folder, part_name
        self.size, self.sha = int(artifact["size"]), str(artifact["sha256"])
        self.part: PartFile | None = PartFile.reopen(folder, part_name)

    def close(self) -> None:
        if self.part is not None:
            self.part.close()

    def run(
        self, progress: Progress, stop: threading.Event | None, sleep: Callable[[float], None]
    ) -> PartFile:
        """The complete, checked partial file, retrying while the server is away."""
        failures, restarted = 0, False
        while True:
            try:
                part = self._fetch(progress, stop)
            except TransferStopped:
                raise
            except SafeboardError as exc:
                if not isinstance(exc, ServiceUnavailable) and exc.code != "internal":
                    raise
                failures += 1
                if failures >= MAX_FAILURES:
                    raise ServiceUnavailable(
                        f"download failed {failures} times in a row ({exc.message}); run it "
                        f"again to resume from {self.folder.path / self.part_name}"
                    ) from None
                sleep(backoff(failures))
                continue

            def checking(done: int, total: int) -> None:
                progress("verify", done, total)

            if part.sha256(checking) == self.sha:
                return part
            self._discard()
            if restarted:
                raise ConfigError(
                    f"the bytes downloaded for {self.artifact_id} do not match its SHA-256"
                )
            restarted = True  # a part of something else: once more, from the first byte

    def _discard(self) -> None:
        if self.part is not None:
            self.part.discard()
            self.part = None

    def _fetch(self, progress: Progress, stop: threading.Event | None) -> PartFile:
        """Bring the partial file to ``size`` bytes, asking only for what it lacks."""
        size = self.size
        have = self.part.size if self.part is not None else 0
        if have > size:
            self._discard()
            have = 0
        if self.part is not None and have == size and size > 0:
            return self.part
        headers = {"If-Range": f'"{self.sha}"', "Range": f"bytes={have}-"} if have else {}
        path = paths.artifact_content(self.artifact_id)
        with self.client.stream("GET", path, headers=headers, timeout=TIMEOUT) as response:
            if response.status_code == 206:
                if not response.headers.get("content-range", "").startswith(f"bytes {have}-"):
                    raise ServiceUnavailable("the server sent another range than asked for")
            else:
                have = 0  # a whole answer: the part was of another version, or no range asked
            if have == 0 or self.part is None:
                self._discard()
                self.part = PartFile.create(self.folder, self.part_name)
            part = self.part
            write = part.write_from(have)
            progress("download", have, size)
            for block in response.iter_bytes(READ_SIZE):
                if stop is not None and stop.is_set():
                    raise TransferStopped(f"download stopped; it resumes from {part.path}")
                if have + len(block) > size:  # never more than the artifact's size on disk
                    self._discard()
                    raise ServiceUnavailable(
                        f"the server sent more than the artifact's {size} bytes; nothing kept"
                    )
                write(block)
                have += len(block)
                progress("download", have, size)
            part.sync()
        if have != size:
            raise ServiceUnavailable(f"the download ended after {have} of {size} bytes")
        return part
