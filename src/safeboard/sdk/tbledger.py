"""Where earlier imports of a run cut its event files into batches.

An import cuts a file at fixed byte windows (the same cuts every time) and where it stopped
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
import json
from pathlib import Path

from safeboard.client.config import write_private

__all__ = ["CutLedger"]


class CutLedger:
    """The stops of each file (by name) of one run; ``path`` None keeps them in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._cuts: dict[str, list[int]] = {}
        if path is not None:
            try:
                loaded = json.loads(path.read_text())
                self._cuts = {str(k): sorted(int(c) for c in v) for k, v in loaded.items()}
            except (OSError, ValueError, TypeError, AttributeError):
                self._cuts = {}  # none yet, or unreadable: window cuts only

    def next_cut(self, file_name: str, start: int, window: int) -> int:
        """The first cut after ``start``: the next window, or an earlier stop."""
        cut = (start // window + 1) * window
        cuts = self._cuts.get(file_name, [])
        at = bisect.bisect_right(cuts, start)
        return min(cut, cuts[at]) if at < len(cuts) else cut

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
