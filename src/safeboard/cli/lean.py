"""Imports for a command that starts often and must start fast (``safeboard import
tensorboard``: P7 times the command's start).

httpx without two optional modules that its synchronous client never uses but that cost
CPU at every start where they happen to be installed:

- ``trio``: httpcore imports it at its own import (for its async backend under trio),
  about 60 ms of CPU; the command's client is synchronous.
- ``pygments`` (and with it ``rich`` and the rest of httpx's own command line): httpx
  imports its CLI at its import when these are installed, about 30 ms of CPU.

Both are hidden only while httpx and httpcore are imported, and importable again
afterwards. ``safeboard import tensorboard`` calls this first (P7: the command's start
is part of the import it times); a process that imported httpx already is unchanged.

The end without the interpreter's teardown: once everything the command wrote is closed
and its output flushed, :func:`exit_at_once` ends the process. Tearing down the modules it
loaded (numpy, httpx, ssl, the client) took about 35 ms of each import's time.

numpy with one OpenBLAS thread: numpy's wheels bring OpenBLAS, which starts a thread per
core when numpy is imported, about 60 ms of CPU on 2 cores for a command that does no
linear algebra (its numpy is element-wise: checksums, gathers, packing).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import NoReturn

__all__ = ["HIDDEN", "exit_at_once", "import_http_lean", "single_threaded_blas"]

HIDDEN = ("trio", "pygments")


def import_http_lean() -> None:
    """Import httpx and httpcore with :data:`HIDDEN` hidden (those not imported yet)."""
    if "httpx" in sys.modules and "httpcore" in sys.modules:
        return
    hidden = [name for name in HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it fails
    try:
        importlib.import_module("httpx")
        importlib.import_module("httpcore")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def single_threaded_blas() -> None:
    """One OpenBLAS thread for numpy, unless numpy is imported already or the user chose
    (``OPENBLAS_NUM_THREADS`` set)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def exit_at_once(code: int = 0) -> NoReturn:
    """End the process with ``code`` now: log handlers, stdout and stderr flushed; no exit
    handlers, no teardown of modules. Only where the command has closed what it wrote."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
