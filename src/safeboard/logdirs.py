"""A TensorBoard log directory's layout, and where earlier imports cut its files: what
``safeboard import tensorboard`` needs before it knows how it will import (standard
library only: its start is part of every import's time, P7).

Every directory under the log directory that holds event files (``*.tfevents.*``) becomes
a run, named by its path relative to the log directory (the log directory's own name for
files at its top). The run's id comes from the project and the directory's absolute path,
so importing again reaches the same run.

Where earlier imports of a run cut its event files into batches (:class:`CutLedger`): an
import cuts a file at fixed byte windows (the same cuts every time) and where it stopped
reading: the end of the file then. When the file has grown since (its training went on,
or ``--follow`` read it as it grew), a new import must cut where the earlier one stopped,
or its batches would overlap the ones sent and points would be stored twice. Those stops
are kept here, per run, in the user's state directory (``<spool dir>/tensorboard/``).
Without this file (another machine, a deleted state directory), re-importing files that
have not changed since is still exact; files that grew may get their last window's points
twice.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from pathlib import Path
from typing import Any

from safeboard.datadir import write_private
from safeboard.userdirs import spool_root

__all__ = ["CutLedger", "is_event_file", "ledger_path", "run_dirs", "run_id_for"]


def is_event_file(path: Path) -> bool:
    return ".tfevents." in path.name and path.is_file()


def run_dirs(logdir: Path) -> dict[str, Path]:
    """Each directory holding event files, by run name (its path under ``logdir``)."""
    found: dict[str, Path] = {}
    for path in sorted(logdir.rglob("*.tfevents.*")):
        if not is_event_file(path):
            continue
        relative = path.parent.relative_to(logdir).as_posix()
        name = logdir.resolve().name if relative == "." else relative
        found.setdefault(name[-200:] or "tensorboard", path.parent)
    return found


def run_id_for(project: str, directory: Path | str) -> str:
    """The run's id: from the project and the directory's absolute path (a ``str``: taken
    as already resolved, as the import socket's server takes it, touching no file)."""
    resolved = directory if isinstance(directory, str) else str(directory.resolve())
    key = f"tensorboard\0{project}\0{resolved}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ledger_path(run_id: str) -> Path:
    """The ledger of the run's cuts, in the user's state directory."""
    return spool_root() / "tensorboard" / f"{run_id}.json"


class CutLedger:
    """The stops of each file (by name) of one run; ``path`` None keeps them in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._cuts: dict[str, list[int]] = {}
        if path is not None:
            try:
                self._cuts = self.parsed(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError, AttributeError):
                self._cuts = {}  # none yet, or unreadable: window cuts only

    @staticmethod
    def parsed(loaded: Any) -> dict[str, list[int]]:
        """A ledger's JSON as its cuts; TypeError, ValueError (OverflowError: an infinite
        number) or AttributeError (not an object) when it is none."""
        return {str(k): sorted(int(c) for c in v) for k, v in loaded.items()}

    def next_cut(self, file_name: str, start: int, window: int) -> int:
        """The first cut after ``start``: the next window, or an earlier stop."""
        cut = (start // window + 1) * window
        cuts = self._cuts.get(file_name, [])
        at = bisect.bisect_right(cuts, start)
        return min(cut, cuts[at]) if at < len(cuts) else cut

    def cuts(self) -> dict[str, list[int]]:
        """The stops of each file, by name."""
        return {name: list(cuts) for name, cuts in self._cuts.items()}

    def add(self, file_name: str, offset: int) -> None:
        cuts = self._cuts.setdefault(file_name, [])
        if offset in cuts:
            return
        bisect.insort(cuts, offset)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_private(self.path, json.dumps(self._cuts, separators=(",", ":")).encode())
            except OSError:
                pass  # window cuts still hold for unchanged files
