"""``write_private``: a file written whole (0600) or not at all, by the C writer
(``client/_writes.c``, which lets go of the interpreter lock once for all of its system
calls) and by the Python path it falls back to, with the same results and errors."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from safeboard.client import config


@pytest.fixture(params=["C", "python"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "C":
        assert config.WRITES is not None, "the C file writer is not built: python3 hatch_build.py"
    else:
        monkeypatch.setattr(config, "WRITES", None)
    return str(request.param)


def test_the_library_is_built_from_this_source() -> None:
    assert config.WRITES is not None, "the C file writer is not built: python3 hatch_build.py"
    source = Path(config.__file__).with_name("_writes.c")
    assert config.WRITES.source_digest == hashlib.sha256(source.read_bytes()).hexdigest(), (
        "the C file writer is older than _writes.c: rebuild it (python3 hatch_build.py)"
    )


def test_a_file_is_written_whole_private_and_replaces_the_old_one(
    writer: str, tmp_path: Path
) -> None:
    path = tmp_path / "batch"
    path.write_bytes(b"old")
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one write() may take
    config.write_private(path, data)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch"]  # no temporary left
    config.write_private(path, memoryview(b"as a buffer"))
    assert path.read_bytes() == b"as a buffer"


def test_a_failure_names_the_path_and_leaves_nothing(writer: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        config.write_private(tmp_path / "no-such-dir" / "batch", b"x")
    assert "no-such-dir" in str(missing.value.filename)
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError, match="a-directory") as renamed:  # rename onto a directory
        config.write_private(target, b"x")
    assert renamed.value.filename2 == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]  # tmp removed


def test_a_list_of_buffers_is_written_one_after_the_other(writer: str, tmp_path: Path) -> None:
    """How the spool writes a sealed batch (wire.pack_parts): a header and the slices'
    arrays as they are, more of them than one writev takes (IOV_MAX, 1024 on Linux),
    empty ones among them."""
    parts: list[object] = [b"header:"]
    for i in range(3000):
        parts.append(np.arange(i % 7, dtype=np.int64))
        parts.append(np.full(i % 5, i, dtype=np.float64))
        parts.append(b"" if i % 3 else bytes([i % 256]))
    path = tmp_path / "batch"
    config.write_private(path, parts)
    assert path.read_bytes() == b"".join(parts)  # type: ignore[arg-type]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config.write_private(path, (b"a", memoryview(b"b"), bytearray(b"c")))
    assert path.read_bytes() == b"abc"
    config.write_private(path, [])
    assert path.read_bytes() == b""
    with pytest.raises(TypeError):
        config.write_private(path, [b"fine", "not a buffer"])  # type: ignore[list-item]
    assert path.read_bytes() == b""  # the old file stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch"]


def test_a_name_taken_by_another_process_is_skipped(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = iter([7, 7, 8])
    monkeypatch.setattr(config, "_names", taken)
    monkeypatch.setattr(config._random, "getrandbits", lambda _bits: 0)
    left = tmp_path / f".batch.{os.getpid()}.7.00000000.tmp"
    left.write_bytes(b"someone else's")
    config.write_private(tmp_path / "batch", b"mine")
    assert (tmp_path / "batch").read_bytes() == b"mine"
    assert left.read_bytes() == b"someone else's"


def test_the_scripts_random_sequence_is_left_alone(writer: str, tmp_path: Path) -> None:
    """A seeded training script draws the same numbers whether or not the SDK wrote."""
    before = random.getstate()
    config.write_private(tmp_path / "batch", b"x")
    assert random.getstate() == before


def test_the_c_writer_lets_go_of_the_interpreter_lock(tmp_path: Path) -> None:
    """While it writes and syncs, another thread runs Python: it counts on."""
    assert config.WRITES is not None, "the C file writer is not built: python3 hatch_build.py"
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    data = os.urandom(32 * 1024 * 1024)
    counter = threading.Thread(target=count)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # only a call that lets go of the lock lets the counter run
    counter.start()
    try:
        time.sleep(0.05)  # the counter holds the lock until this thread asks for it
        before = counted[0]
        config.WRITES.write_atomic(str(tmp_path / "t"), str(tmp_path / "f"), data, 0o600)
        during = counted[0] - before
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(previous)
    assert (tmp_path / "f").read_bytes() == data
    assert during > 1000
