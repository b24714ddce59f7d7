"""Imports for a command that starts often and must start fast (``safeboard import
tensorboard``: P7 times the command's start).

httpx without trio and pygments: safeboard/leanhttp.py.

The end without the interpreter's teardown: once everything the command wrote is closed
and its output flushed, :func:`exit_at_once` ends the process. Tearing down the modules it
loaded (numpy, httpx, ssl, the client) took about 35 ms of each import's time.

numpy with one OpenBLAS thread: numpy's wheels bring OpenBLAS, which starts a thread per
core when numpy is imported, about 60 ms of CPU on 2 cores for a command that does no
linear algebra (its numpy is element-wise: checksums, gathers, packing).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from safeboard.leanhttp import HIDDEN, import_http_lean

__all__ = ["HIDDEN", "exit_at_once", "import_http_lean", "single_threaded_blas"]


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
