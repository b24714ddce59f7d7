"""Private scratch directories for the test machinery that lives as long as its process (a
fork server's socket, a forked server's exit status, the migrated template database), all
under one directory per process that is removed when the process ends.

Each made its own ``tempfile.mkdtemp`` and none was removed: a run of the suite left about
a thousand directories in /tmp, and every later run added as many. Removed at exit, one
worker's directory was still left after each full run (of four xdist workers): the
session's end removes them too (tests/conftest.py: pytest_sessionfinish).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["remove_scratch", "scratch_dir"]

_lock = threading.Lock()
_root: tuple[int, Path] | None = None  # (the process that made it, the directory)


def _process_root() -> Path:
    global _root  # noqa: PLW0603  (one per process)
    with _lock:
        if _root is None or _root[0] != os.getpid():  # a forked child makes its own
            root = Path(tempfile.mkdtemp(prefix="safeboard-tests-"))
            atexit.register(_remove, os.getpid(), root)
            _root = (os.getpid(), root)
        return _root[1]


def _remove(owner: int, root: Path) -> None:
    if os.getpid() == owner:  # never a forked child's exit: the parent still uses it
        shutil.rmtree(root, ignore_errors=True)


def scratch_dir(prefix: str) -> Path:
    """A new private (0700) directory, removed with the others when this process exits."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_process_root()))


def remove_scratch() -> None:
    """Remove this process's directory now (the session is over); a later scratch_dir
    makes a new one."""
    global _root  # noqa: PLW0603  (one per process)
    with _lock:
        if _root is not None and _root[0] == os.getpid():
            _remove(*_root)
            _root = None
