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

While a bulk job runs in the server (an import through the import socket, which allocates
blocks of 4 MiB and arrays of hundreds of KiB for every window it reads),
``blocks_reused()`` lifts the fixed threshold: those blocks come from the heap and are
reused from one window to the next, rather than each mapped and faulted in afresh (about
120 ms of a 1,000,000-point import, a fifth of it). When the last such job ends the
threshold is fixed again and the heap trimmed.

And SQLite reads the database through a shared mapping (mmap_size, storage/engine.py):
the pages a read touched stay resident in the server (counted in its RSS) for as long as
the connection lives, 95 MiB after 30 downsampled reads of 3,000,000 points. They are
the page cache's pages, shared, but they are the server's RSS. ``Releaser`` watches the
process: when it has been busy and then quiet (almost no CPU for ``interval`` seconds),
it trims the heap and drops the resident pages of the database's mappings
(``madvise(MADV_DONTNEED)``: a shared mapping of a file keeps its contents in the file
and the page cache, and a later read faults them back in, a few ms per 100 MiB).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

__all__ = [
    "MMAP_THRESHOLD", "Releaser", "blocks_reused", "configure", "drop_mapped", "released",
    "trim",
]  # fmt: skip

MMAP_THRESHOLD = 256 * 1024
BULK_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its dynamic threshold
_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MADV_DONTNEED = 4
_trimming = threading.Lock()
_log = logging.getLogger(__name__)


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library the interpreter is linked with (the process's own symbols, as
    ``dlopen(NULL)`` sees them). ``ctypes.util.find_library`` ran ``ldconfig -p`` in a
    child at every server start (about 1.5 ms), and finds nothing where /sbin/ldconfig is
    missing and neither gcc nor ld is installed (some minimal container images): that
    turned the memory's release off without a word."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
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


_bulk = threading.Lock()
_bulk_jobs = 0


@contextmanager
def blocks_reused() -> Iterator[None]:
    """Blocks up to 32 MiB from the heap while this runs (the module's docstring says why);
    then the fixed threshold again, once no other such job runs, and the heap trimmed."""
    global _bulk_jobs  # noqa: PLW0603  (the process's malloc settings are global too)
    libc = _libc()
    if libc is None:
        yield
        return
    with _bulk:
        _bulk_jobs += 1
        if _bulk_jobs == 1:
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * BULK_THRESHOLD)
            libc.mallopt(_M_MMAP_THRESHOLD, BULK_THRESHOLD)
    try:
        yield
    finally:
        with _bulk:
            _bulk_jobs -= 1
            if _bulk_jobs == 0:
                configure()
        trim()


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


def drop_mapped(files: Sequence[Path]) -> int:
    """Drop the resident pages of this process's shared, read-only mappings of ``files``
    (their contents stay in the files); the bytes of mappings found."""
    libc = _libc()
    names = {str(f) for f in files}
    if libc is None or not names:
        return 0
    dropped = 0
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5] not in names or fields[1] != "r--s":
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped


class Releaser(threading.Thread):
    """Gives memory back once the server is quiet after work: every ``interval`` seconds
    it reads the process's CPU time; after a busy interval followed by a quiet one (under
    ``quiet`` CPU seconds, all threads), ``trim()`` and ``drop_mapped(files)``."""

    def __init__(self, files: Sequence[Path], interval: float = 2.0, quiet: float = 0.05) -> None:
        super().__init__(name="safeboard-heap", daemon=True)
        self.files = [Path(os.path.realpath(f)) for f in files]
        self.interval = interval
        self.quiet = quiet
        self.stopped = threading.Event()

    def run(self) -> None:
        busy = False
        seen = time.process_time()
        while not self.stopped.wait(self.interval):
            now = time.process_time()
            used, seen = now - seen, now
            if used > self.quiet:
                busy = True
            elif busy:
                busy = False
                trim()
                drop_mapped(self.files)
                seen = time.process_time()  # its own cost is not work
                _log.debug("memory given back after work")

    def stop(self) -> None:
        self.stopped.set()
