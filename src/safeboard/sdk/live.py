"""The runs this process has started and not finished, and what ends them at exit.

``init()`` registers each run here, and while one is live the objects alive at its start
are left out of the garbage collector's passes (``switching.hold_heap``: a full collection
inside a ``log()`` call walked the SDK's imports, 15 to 20 ms). At the interpreter's exit
every live run is finished: ``failed`` after an uncaught exception, ``killed`` after an
uncaught KeyboardInterrupt, so that Ctrl-C ends a run the same way with or without
``with safeboard.init(...)``. Inside a task, :func:`live_run` is how a second ``init()``
(the script's, a library's, a framework integration's) finds the task's run that this
process holds already, rather than start it twice.
"""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from safeboard.sdk.switching import hold_heap, release_heap

if TYPE_CHECKING:
    from safeboard.sdk.run import Run, Status

__all__ = ["install_exit_hooks", "live_run", "register", "unregister"]

_live: weakref.WeakSet[Run] = weakref.WeakSet()
_ending: list[Status] = []  # set by the excepthook; the last one ended the script
_hooks = threading.Lock()
_hooked: list[bool] = []


def register(run: Run) -> None:
    _live.add(run)
    hold_heap()


def unregister(run: Run) -> None:
    """At ``finish()``: after the last live run, the collector walks everything again."""
    if run in _live:
        _live.discard(run)
        release_heap()


def live_run(run_id: str) -> Run | None:
    """The run ``run_id`` that this process started and has not finished, if any."""
    for run in list(_live):
        if run.id == run_id and not run.finished:
            return run
    return None


def install_exit_hooks() -> None:
    """At the first init(): finish every live run at exit, as killed after an uncaught
    KeyboardInterrupt and failed after any other uncaught exception (installed then, not
    at import: importing safeboard changes nothing)."""
    with _hooks:
        if _hooked:
            return
        _hooked.append(True)
        previous = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            _ending.append("killed" if issubclass(kind, KeyboardInterrupt) else "failed")
            previous(kind, exc, tb)

        sys.excepthook = hook
        atexit.register(_finish_all)


def _finish_all() -> None:
    for run in list(_live):
        run.finish(_ending[-1] if _ending else "finished")
