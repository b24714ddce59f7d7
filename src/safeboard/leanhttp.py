"""httpx imported without what a synchronous client never uses (standard library only
until it imports httpx): for a command that must start fast (``safeboard import
tensorboard``, P7) and for the server, which loads httpcore for its import socket
(server/imports.py) and keeps it for its whole life.

httpx without two optional modules that its synchronous client never uses but that cost
CPU at every start where they happen to be installed:

- ``trio``: httpcore imports it at its own import (for its async backend under trio),
  about 60 ms of CPU; the command's client is synchronous.
- ``pygments`` (and with it ``rich`` and the rest of httpx's own command line): httpx
  imports its CLI at its import when these are installed, about 30 ms of CPU.

Both are hidden only while httpx and httpcore are imported, and importable again
afterwards. ``safeboard import tensorboard`` calls this first (P7: the command's start
is part of the import it times); a process that imported httpx already is unchanged.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["HIDDEN", "import_http_lean"]

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
