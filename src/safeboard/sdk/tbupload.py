"""Event files kept as artifacts of their run, under the reserved prefix ``tensorboard/``.

The dashboard's "TensorBoard" button serves these copies (docs/tensorboard.md): TensorBoard
on the server reads only files that belong to the runs shown, never a directory whose
path a client wrote into a run's metadata. ``safeboard import tensorboard`` uploads them
beside its reading (after it with ``--follow``), ``run.sync_tensorboard()`` at ``finish()``.

One artifact per file: a file uploaded before and unchanged since is not uploaded again
(its upload id comes from its path, size, modification time and SHA-256); a file that
grew or changed is uploaded again and **replaces** the earlier version (deleted once the
new one is complete), so the run holds one copy of each file.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from safeboard.client.artifacts import upload_file
from safeboard.client.typed import Client
from safeboard.errors import NotFound, SafeboardError

__all__ = ["PREFIX", "Keeper", "artifact_name", "upload_event_files"]

PREFIX = "tensorboard/"


def artifact_name(relative: str) -> str:
    """``tensorboard/<path under the run's directory>``: the name TensorBoard's copy keeps."""
    return PREFIX + relative


class Keeper:
    """One run's event files kept, from any thread, one call at a time; a file already
    kept by this keeper and unchanged since (size and modification time) is not hashed
    again."""

    def __init__(self, client: Client, run_id: str, say: Callable[[str], None]) -> None:
        self.client, self.run_id, self.say = client, run_id, say
        self._kept: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def keep(self, files: Iterable[tuple[Path, str]]) -> int:
        with self._lock:
            changed = []
            for path, relative in files:
                try:
                    stat = path.stat()
                except OSError:
                    continue  # gone: nothing to keep
                if self._kept.get(path) != (stat.st_size, stat.st_mtime_ns):
                    changed.append((path, relative, (stat.st_size, stat.st_mtime_ns)))
            sent = upload_event_files(
                self.client, self.run_id, [(p, r) for p, r, _ in changed], say=self.say
            )
            for path, _, seen in changed:  # (a file that failed is said, and tried again)
                self._kept[path] = seen
            return sent


def upload_event_files(
    client: Client,
    run_id: str,
    files: Iterable[tuple[Path, str]],
    *,
    say: Callable[[str], None] = lambda _: None,
) -> int:
    """Upload each ``(file, path under the run's directory)`` the run does not hold as it
    is now; return how many were uploaded. A file that cannot be uploaded is said and
    skipped: the import itself has succeeded."""
    wanted = [(path, artifact_name(relative)) for path, relative in files]
    if not wanted:
        return 0
    held: dict[str, list[str]] = {}
    for artifact in client.artifacts(run_id):
        if artifact.name.startswith(PREFIX):
            held.setdefault(artifact.name, []).append(artifact.id)
    uploaded = 0
    for path, name in wanted:
        try:
            done = client.retry.call(partial(  # resumable: sent again when the server is busy
                upload_file, client.api, run_id, path, name=name, kind="file",
                content_type="application/octet-stream",
            ))  # fmt: skip
        except SafeboardError as exc:
            say(f"{path}: not kept for the TensorBoard button: {exc.message}")
            continue
        before = held.get(name, [])
        uploaded += done["id"] not in before  # else: held already, unchanged
        earlier = [a for a in before if a != done["id"]]
        for artifact_id in earlier:  # replaced: one copy of each file
            with contextlib.suppress(NotFound):
                client.delete_artifact(artifact_id)
    return uploaded
