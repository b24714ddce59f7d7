"""The spool of one run: its lock names the process holding it, and reading it tolerates
files that another process removed meanwhile (`safeboard sync`, or a person)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safeboard.sdk.batches import Batch
from safeboard.sdk.spool import RunSpool, SpoolLocked


def test_a_held_lock_is_refused_to_another_holder_and_names_the_pid(tmp_path: Path) -> None:
    mine = RunSpool(tmp_path, "r1")
    mine.lock()
    other = RunSpool(tmp_path, "r1")  # another open file description: flock conflicts
    with pytest.raises(SpoolLocked) as refused:
        other.lock()
    assert refused.value.pid == os.getpid()
    assert other.holder() == os.getpid()
    mine.unlock()
    assert other.holder() is None
    other.lock()
    other.unlock()


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path: Path) -> None:
    code = f"""
        import os
        from pathlib import Path
        from safeboard.sdk.spool import RunSpool
        RunSpool(Path({str(tmp_path)!r}), "r1").lock()
        os._exit(0)
        """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False)
    assert done.returncode == 0
    spool = RunSpool(tmp_path, "r1")
    assert spool.lock_path.exists()
    assert spool.holder() is None


def test_batches_and_points_skip_files_removed_meanwhile(tmp_path: Path) -> None:
    spool = RunSpool(tmp_path, "r1")
    column = {"steps": [0], "times": [0.0], "values": [1.0]}
    first = spool.add_batch(Batch.from_json({"batch_id": "a" * 32, "metrics": {"x": column}}))
    second = spool.add_batch(Batch.from_json({"batch_id": "b" * 32, "metrics": {"x": column}}))
    seen = []
    for path, _ in spool.batches():
        seen.append(path)
        second.unlink()  # removed by another process after the listing
    assert seen == [first]
    assert spool.pending_points() == 1
    spool.remove()
    spool.remove()  # twice: nothing left, no error
    assert not spool.path.exists()
