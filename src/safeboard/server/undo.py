"""A start that fails takes back what it made: ``StartRecord``.

A first start on a disk that fills up on the way (issue 13) stopped with a clear message
but left what it had made so far: ``secrets.toml``, a database file with no schema or
half of one, the local socket, a CA. The next start, after space was freed, had to trust
those. Now the start notes what exists before it writes (once it holds the data
directory's lock, so no other server writes there meanwhile), and when it fails before
it serves, it removes what it made, and only that:

* in the data directory, each entry that was not there when the lock was taken
  (recursively: a directory it made goes whole); ``server.lock`` itself stays, as it does
  after any stop (a later start takes it again);
* a SQLite database elsewhere (``--database-url sqlite:///...``) and the artifact store
  elsewhere, when the start made them.

Nothing that existed before the start is removed or changed back: a database that was
there keeps its ``-wal`` and ``-shm`` files (they may hold its committed transactions),
and files that the start replaced in place (a renewed certificate) stay as written.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

__all__ = ["SQLITE_SIDE_FILES", "StartRecord"]

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class StartRecord:
    """What existed before a start, to remove what the start made if it fails."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._found = {entry.name for entry in _entries(data_dir)}
        self._absent: list[Path] = []  # other paths the start may make

    def watch(self, path: Path) -> None:
        """Also take back ``path`` (a file or a directory tree) if the start makes it."""
        if not _exists(path):
            self._absent.append(path)

    def watch_database(self, path: Path) -> None:
        """A SQLite database file: it and its side files, if the start makes it."""
        if not _exists(path):
            self._absent += [path, *(Path(f"{path}{side}") for side in SQLITE_SIDE_FILES)]

    def undo(self) -> list[Path]:
        """Remove what the start made; the paths removed. Best effort: a path that cannot
        be removed is left (the start's own error is the one to report)."""
        made = [e for e in _entries(self.data_dir) if e.name not in self._kept()]
        made += [path for path in self._absent if _exists(path)]
        for path in made:
            _remove(path)
        return made

    def _kept(self) -> set[str]:
        """Names in the data directory to keep: those found, and the side files of a
        database found (SQLite's, written by this start to a database it did not make)."""
        sides = {f"{name}{side}" for name in self._found for side in SQLITE_SIDE_FILES}
        return self._found | sides


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
