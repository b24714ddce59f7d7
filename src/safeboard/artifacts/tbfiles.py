"""The event files a run keeps as artifacts (``tensorboard/<path>``, sdk/tbupload.py), for
TensorBoard over runs (tensorboards/runsets.py declares what it needs; services.py passes
this in). No access check here: the caller has checked read access to every run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from safeboard.artifacts import repository as artifacts
from safeboard.artifacts.store import ArtifactStore, StoreError
from safeboard.errors import ServiceUnavailable

__all__ = ["PREFIX", "RunEventFiles"]

PREFIX = "tensorboard/"


class RunEventFiles:
    def __init__(self, engine: sa.Engine, store: ArtifactStore) -> None:
        self.engine = engine
        self.store = store

    def of_runs(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str, int]]]:
        """By run: ``(artifact id, path under the prefix, size)``, the newest complete
        version of each name. Runs without any are absent."""
        if not run_ids:
            return {}
        with self.engine.connect() as conn:
            found = artifacts.named_with_prefix(conn, list(run_ids), PREFIX)
        newest: dict[tuple[str, str], tuple[str, str, int]] = {}
        for artifact in found:  # oldest first: a later version replaces an earlier
            if artifact.name.startswith(PREFIX):  # (SQLite's LIKE ignores case)
                relative = artifact.name[len(PREFIX) :]
                newest[(artifact.run_id, relative)] = (artifact.id, relative, artifact.size)
        by_run: dict[str, list[tuple[str, str, int]]] = {}
        for (run_id, _), item in sorted(newest.items()):
            by_run.setdefault(run_id, []).append(item)
        return by_run

    def copy(self, artifact_id: str, size: int, target: Path) -> None:
        """The stored bytes into ``target`` (a new file, 0600); ServiceUnavailable when
        they cannot be read or written (a blob missing from the store, a full disk)."""
        try:
            reader = self.store.read(artifact_id, 0, size)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                    for chunk in reader:
                        out.write(chunk)
            finally:
                reader.close()
        except (StoreError, OSError) as exc:
            raise ServiceUnavailable(
                f"an event file of these runs (artifact {artifact_id}) could not be copied "
                f"for TensorBoard: {exc.strerror if isinstance(exc, OSError) else exc}"
            ) from None
