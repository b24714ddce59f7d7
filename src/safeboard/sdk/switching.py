"""What the SDK asks of the interpreter so that ``run.log()`` never waits (P3, issue 13):
a short thread switch interval while its threads work, and a garbage collector that does
not walk the SDK's own objects.

**The switch interval.** The sender thread shares one interpreter lock with the training
loop. A thread that wants the lock waits for the holder to let go, and a busy holder lets
go only every ``sys.getswitchinterval()`` (5 ms by default): while the sender packed
points, a ``run.log()`` call waited up to that long. :func:`responsive` lowers the
interval to :data:`SWITCH_SECONDS` for the SDK's work that computes (the sender's packing,
a system metrics sample), and puts back what it found when the last is done: the training
loop never waits for it longer than that, plus the longest single step of the work (a
slice of points, ``batches.SLICE_VALUES``). Only there: the interval is also how long a
thread that waits lets the holder run before it takes the lock, and the sender's
spooling and delivering wait on I/O between short steps: under the short interval, back
from each, the sender would take the lock from the training loop at once; under the
default it gets it back when the loop lets go (a training step waiting on its device).
Its whole round under the short interval was tried, and not kept (docs/benchmarks.md,
issue 13's sixth session).

**The collector.** ``init()`` imports the SDK's dependencies (numpy, httpx, the client):
about 36,000 objects the collector tracks. Each full collection walks every tracked
object, and one starts in whatever allocation crosses its threshold: in the training
loop, inside a ``log()`` call, 15 to 20 ms each (bench/log_stall.py's loop).
:func:`hold_heap` moves the objects alive at a run's start into the collector's permanent
generation (``gc.freeze()``), which collections skip; :func:`release_heap` gives them back
(``gc.unfreeze()``) when the last run of the process is finished, so that a notebook that
starts runs again and again does not keep their garbage for ever. Objects a script had
frozen itself stay frozen.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SWITCH_SECONDS", "hold_heap", "release_heap", "responsive"]

SWITCH_SECONDS = 0.0002

_lock = threading.Lock()
_working = 0
_saved = 0.0
_runs = 0  # runs started and not finished (hold_heap, release_heap)
_thaw = False  # whether the last release_heap unfreezes (nothing was frozen before us)


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


def hold_heap() -> None:
    """At a run's start: the objects alive now leave the collector's generations."""
    global _runs, _thaw  # noqa: PLW0603  (one interpreter, one collector)
    with _lock:
        if _runs == 0:
            _thaw = gc.get_freeze_count() == 0
        _runs += 1
        gc.freeze()


def release_heap() -> None:
    """At a run's end: after the last, what :func:`hold_heap` froze is collectable again."""
    global _runs  # noqa: PLW0603
    with _lock:
        if _runs == 0:
            return
        _runs -= 1
        if _runs == 0 and _thaw:
            gc.unfreeze()
