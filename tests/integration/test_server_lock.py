"""``server.lock`` (issue 11): one server per data directory. The lock is held by real
processes here, so the kernel's release on death is what is tested."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from safeboard.errors import ConfigError
from safeboard.server.lock import LOCK_FILE, ServerLock

HOLD = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    from pathlib import Path
    from safeboard.server.lock import ServerLock

    data_dir, pid = Path(sys.argv[1]), int(sys.argv[2])
    if pid == 0:  # as a server does
        lock = ServerLock.acquire(data_dir)
        lock.record("http://127.0.0.1:8080")
    else:  # as a child left by a killed server does: the lock, and a record of another pid
        fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": pid, "url": "http://x", "started": "?"}).encode())
    print("held", flush=True)
    time.sleep(60)
    """
)


def hold(data_dir: Path, record_pid: int = 0) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(record_pid)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def kill(holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.communicate()


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_second_holder_is_refused_with_the_running_server(tmp_path: Path) -> None:
    holder = hold(tmp_path)
    try:
        with pytest.raises(ConfigError) as refused:
            ServerLock.acquire(tmp_path)
        message = str(refused.value)
        assert "another safeboard server is running" in message
        assert f"pid {holder.pid}, http://127.0.0.1:8080, since " in message
        assert f"kill -INT {holder.pid}" in message
        assert "\n" not in message
    finally:
        kill(holder)
    # The kernel released it with the process: the file stays, the lock is free.
    assert (tmp_path / LOCK_FILE).exists()
    lock = ServerLock.acquire(tmp_path, settle=0)
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid()
    assert (tmp_path / LOCK_FILE).stat().st_mode & 0o077 == 0
    lock.release()


def test_a_record_of_a_dead_server_is_never_shown(tmp_path: Path) -> None:
    """A child of a killed server may hold the lock a little longer: the start waits, and
    if it must refuse, it does not name the dead server as running."""
    gone = dead_pid()
    holder = hold(tmp_path, record_pid=gone)
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError) as refused:
            ServerLock.acquire(tmp_path, settle=0.5)
        assert time.monotonic() - started >= 0.5  # it waited for the lock to settle
        message = str(refused.value)
        assert str(gone) not in message
        assert "running" not in message
        assert "still ending" in message
    finally:
        kill(holder)
    ServerLock.acquire(tmp_path, settle=0).release()


def test_a_reused_pid_is_not_named(tmp_path: Path) -> None:
    """The record names a live process that does not hold the file (its pid was reused):
    not shown either."""
    holder = hold(tmp_path, record_pid=os.getppid())
    try:
        with pytest.raises(ConfigError, match="still ending") as refused:
            ServerLock.acquire(tmp_path, settle=0)
        assert f"pid {os.getppid()}" not in str(refused.value)
    finally:
        kill(holder)
