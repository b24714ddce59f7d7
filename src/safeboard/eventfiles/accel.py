"""The event-file reader's C loops (``_scan.c``: the framing walk with its checksums, and
the plain scalar events decoded), when the package was built with a C compiler; else
``None``, and records.py and bulk.py walk and decode with numpy, to the same results.

``SCAN`` is read at each call, so that a test can set it to ``None`` for the numpy path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["NOT_BUILT", "SCAN", "describe"]

NOT_BUILT = (
    "the C event-file reader was not built when safeboard was installed (no C compiler or "
    "no Python headers then): reading with numpy, about 4x slower. To build it, install a C "
    "compiler and Python's headers (Debian, Ubuntu: apt install gcc python3-dev) and "
    "install safeboard again"
)


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("safeboard.eventfiles._scan")
    except ImportError:
        return None


SCAN: ModuleType | None = _load()


def describe() -> str:
    """Which reader runs, in words (bench/tb_import.py prints it)."""
    if SCAN is None:
        return "numpy (the C reader was not built at install)"
    return f"C (CRC32C by {SCAN.crc})"
