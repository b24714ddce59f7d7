"""Memory given back to the system (safeboard/heap.py, issue 13): the resident pages of a
shared read-only mapping (how SQLite reads the database) are dropped, by hand and by the
releaser once the process turns quiet after work; the contents stay readable."""

from __future__ import annotations

import mmap
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safeboard import heap

MIB = 2**20
SIZE = 32 * MIB

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


def file_resident() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile")


def mapped(path: Path) -> mmap.mmap:
    path.write_bytes(bytes(range(256)) * (SIZE // 256))
    with path.open("rb") as f:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # PROT_READ, MAP_SHARED
    total = 0
    for offset in range(0, SIZE, mmap.PAGESIZE):  # every page resident
        total += view[offset]
    assert total == 0
    return view


def test_drop_mapped_gives_back_the_resident_pages_of_a_file(tmp_path: Path) -> None:
    view = mapped(tmp_path / "db")
    before = file_resident()
    assert heap.drop_mapped([tmp_path / "other"]) == 0
    assert heap.drop_mapped([tmp_path / "db"]) >= SIZE
    assert file_resident() < before - SIZE // 2
    assert view[SIZE - 1] == 255  # read again from the file
    view.close()


def test_the_releaser_acts_once_the_process_is_quiet_after_work(tmp_path: Path) -> None:
    view = mapped(tmp_path / "db")
    before = file_resident()
    releaser = heap.Releaser([tmp_path / "db"], interval=0.2, quiet=0.05)
    releaser.start()
    try:
        busy = time.process_time() + 0.5
        while time.process_time() < busy:  # work
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and file_resident() > before - SIZE // 2:
            time.sleep(0.1)
        assert file_resident() < before - SIZE // 2
    finally:
        releaser.stop()
        releaser.join()
        view.close()
    heap.trim()


FINDS_LIBC = """
import sys
started = []
sys.addaudithook(lambda event, args: event == "subprocess.Popen" and started.append(args[1]))
from safeboard import heap
from safeboard.agent.isolation import make_undumpable
print(heap.configure(), make_undumpable(), started)
"""


def test_finding_the_c_library_starts_no_process() -> None:
    """A server and an agent find glibc at every start: through the process's own symbols,
    not ``ctypes.util.find_library`` (a child running ``/sbin/ldconfig -p``, which finds
    nothing in an image without it, gcc and ld)."""
    done = subprocess.run([sys.executable, "-c", FINDS_LIBC], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "[]"]


BLOCKS_REUSED = """
import ctypes, threading
from safeboard import heap

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info

def mapped_by(size):
    before = libc.mallinfo2().hblkhd
    block = bytearray(size)
    grew = libc.mallinfo2().hblkhd - before
    del block
    return grew >= size

assert heap.configure()
assert mapped_by(1 << 20)  # the server's fixed threshold: a mapping of its own
with heap.blocks_reused():
    assert not mapped_by(1 << 20)  # from the heap while a bulk job runs
    with heap.blocks_reused():  # another at once
        pass
    assert not mapped_by(1 << 20)  # still, while the first runs
assert mapped_by(1 << 20)  # fixed again once the last one ended
print("ok")
"""


def test_blocks_come_from_the_heap_only_while_a_bulk_job_runs() -> None:
    """An import through the import socket (server/imports.py) reuses its blocks; the
    fixed threshold comes back when the last one ends (in a new process: malloc's settings
    are the process's)."""
    done = subprocess.run([sys.executable, "-c", BLOCKS_REUSED], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr
