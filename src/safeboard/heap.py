"""Giving freed memory back to the operating system (P10: after any read or export the
server returns to within 50 MiB of its idle size).

glibc's malloc keeps what a process frees: blocks below its mmap threshold stay in the
heap of the thread's arena, and the threshold itself rises to the size of each big block
freed (up to 32 MiB), so the arrays of one big read are kept for the next. Measured on a
3,000,000-point export (bench/memory.py): the server stayed 140 MiB above idle. Two
remedies, both on glibc only (elsewhere they do nothing):

- ``configure()`` at server start fixes the mmap threshold (which stops it rising), so a
  block of 256 KiB or more is its own mapping, unmapped when freed;
- ``trim()`` (``malloc_trim(0)``) returns the free pages of every arena; ``released()``
  calls it when a big response has been written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from functools import cache

__all__ = ["MMAP_THRESHOLD", "configure", "released", "trim"]

MMAP_THRESHOLD = 256 * 1024
_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_trimming = threading.Lock()


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None  # not glibc (musl, macOS)
    return libc


def configure() -> bool:
    """Fix glibc's mmap threshold (and the heap's trim threshold with it); False where
    the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD) == 1)


def trim() -> None:
    """Return the free pages of every malloc arena to the system (one trim at a time:
    another request's trim already does it)."""
    libc = _libc()
    if libc is not None and _trimming.acquire(blocking=False):
        try:
            libc.malloc_trim(0)
        finally:
            _trimming.release()


def released(body: Iterator[bytes]) -> Iterator[bytes]:
    """``body``, then ``trim()`` once it is written (or abandoned)."""
    try:
        yield from body
    finally:
        del body
        trim()
