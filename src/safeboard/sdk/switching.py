"""The interpreter's thread switch interval while the sender works (P3).

The sender thread shares one interpreter lock with the training loop. A thread that wants
the lock waits for the holder to let go, and a busy holder lets go only every
``sys.getswitchinterval()`` (5 ms by default): while the sender packed points, a
``run.log()`` call waited up to that long. :func:`responsive` lowers the interval to
:data:`SWITCH_SECONDS` for the sender's work, and puts back what it found when the last
sender is done: the training loop never waits for the sender longer than that, plus the
longest single step of its work (a slice of points, ``batches.SLICE_VALUES``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SWITCH_SECONDS", "responsive"]

SWITCH_SECONDS = 0.0002

_lock = threading.Lock()
_working = 0
_saved = 0.0


@contextmanager
def responsive() -> Iterator[None]:
    """While inside, the interpreter switches threads at least every SWITCH_SECONDS."""
    global _working, _saved  # noqa: PLW0603  (one interpreter, one interval)
    with _lock:
        if _working == 0:
            _saved = sys.getswitchinterval()
            if _saved > SWITCH_SECONDS:
                sys.setswitchinterval(SWITCH_SECONDS)
        _working += 1
    try:
        yield
    finally:
        with _lock:
            _working -= 1
            if _working == 0 and _saved > SWITCH_SECONDS:
                sys.setswitchinterval(_saved)
