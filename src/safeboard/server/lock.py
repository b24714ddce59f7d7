"""One server per data directory: ``server.lock``, held for the server's whole life.

The first thing a start does in its data directory is take an exclusive ``flock`` on
``<data_dir>/server.lock`` and write into it who holds it (pid, URL, start time). A second
start on the same directory fails to take it and stops with one line naming the running
server, before it changes anything there (secrets, TLS, database, discovery file, socket).

The kernel releases the lock when the process ends, however it ends: a server killed with
SIGKILL leaves the file but no lock, and the next start proceeds. The record is only
shown while its pid is alive, so a refusal never names a server that has gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from safeboard.errors import ConfigError

__all__ = ["LOCK_FILE", "ServerLock"]

LOCK_FILE = "server.lock"
# How long a start waits for a lock whose record names no live process: the record of a
# server that is starting may not be written yet, and a child that a killed server forked
# (the migrations) holds its copy of the lock until it ends.
SETTLE_SECONDS = 5.0


class ServerLock:
    """The data directory's lock, held until this process ends (or :meth:`release`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self.started = datetime.now(UTC).isoformat(timespec="seconds")

    @classmethod
    def acquire(cls, data_dir: Path, *, settle: float = SETTLE_SECONDS) -> ServerLock:
        """Take the lock of ``data_dir``, or raise ConfigError naming who holds it."""
        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        deadline = time.monotonic() + settle
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _live_holder(fd, path)
                if holder is not None or time.monotonic() >= deadline:
                    os.close(fd)
                    raise ConfigError(_refusal(data_dir, path, holder)) from None
                time.sleep(0.1)
                continue
            except OSError as exc:
                os.close(fd)
                raise ConfigError(f"cannot lock {path}: {exc.strerror}") from None
            lock = cls(path, fd)
            lock.record()
            return lock

    def record(self, url: str | None = None) -> None:
        """Write who holds the lock (in place: the lock belongs to this open file)."""
        if self._fd is None:
            return
        data = {"pid": os.getpid(), "url": url, "started": self.started}
        body = (json.dumps(data) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, body, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def _live_holder(fd: int, path: Path) -> dict[str, object] | None:
    """The lock file's record, when it names a live process that has the file open."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    pid = data["pid"]
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another OS user's (the directory is 0700, so unusual)
        pass
    return data if _has_open(pid, path) else None


def _has_open(pid: int, path: Path) -> bool:
    """Whether ``pid`` has ``path`` open (a reused pid has not); True where /proc cannot tell."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fds.iterdir())
    except FileNotFoundError:
        return not Path("/proc/self/fd").is_dir()  # no /proc here: liveness must do
    except OSError:
        return True
    for entry in entries:
        with contextlib.suppress(OSError):  # closed meanwhile
            if str(entry.readlink()) == str(path):
                return True
    return False


def _refusal(data_dir: Path, path: Path, holder: dict[str, object] | None) -> str:
    if holder is None:
        fix = f"or give this one another --data-dir than {data_dir}"
        return (
            f"{path} is locked by a process that is still ending (the server it names has "
            f"exited): wait a moment and start again, {fix}"
        )
    since = str(holder.get("started") or "?")
    with contextlib.suppress(ValueError):
        since = datetime.fromisoformat(since).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    url = holder.get("url") or "(still starting)"
    pid = holder["pid"]
    return (
        f"another safeboard server is running with this data directory: pid {pid}, {url}, "
        f"since {since}; stop it first (kill -INT {pid}), or give this one another "
        f"--data-dir than {data_dir}"
    )
