"""The data directory: created 0700, files that hold secrets written 0600 atomically."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from safeboard.errors import ConfigError

__all__ = [
    "DISK_OK",
    "LOCAL_SOCKET",
    "PLAIN_SOCKET",
    "SocketAddress",
    "disk_state",
    "ensure_data_dir",
    "require_private",
    "write_private",
]

DIR_MODE = 0o700
FILE_MODE = 0o600
# The server's Unix socket in the data directory: local clients send the discovery file's
# key only through it, so only the server that owns the directory can ever receive it.
LOCAL_SOCKET = "server.sock"
# Beside it, a TLS server's socket for plain HTTP: inside the 0700 directory TLS protects
# nothing that the directory does not (whoever can reach the socket can read the server's
# key beside it), and costs each local request its handshake and every byte its crypto.
# ``server.sock`` keeps TLS for clients that predate this one.
PLAIN_SOCKET = "plain.sock"
_SUN_PATH_MAX = 107
DISK_OK = "ok"  # sockaddr_un.sun_path holds 108 bytes, the last one a NUL


class SocketAddress:
    """A Unix socket's path in the form ``bind()`` and ``connect()`` take, however long.

    A path longer than ``sun_path`` allows is reached on Linux through an open descriptor
    of its directory (``/proc/self/fd/N/name``), held until :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dir_fd: int | None = None
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            self.address = str(path)
        elif sys.platform == "linux":
            self._dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.address = f"/proc/self/fd/{self._dir_fd}/{path.name}"
        else:
            raise ConfigError(
                f"{path} is too long for a Unix socket on this system: choose a shorter --data-dir"
            )

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def ensure_data_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700, or check an existing one is private."""
    path = path.expanduser().resolve()
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create data directory {path}: {exc.strerror}; choose another with --data-dir"
        ) from None
    if not path.is_dir():
        raise ConfigError(
            f"data directory {path} is not a directory; choose another with --data-dir"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"data directory {path} is accessible by group or others (mode {mode:o}); "
            f"run: chmod 700 {path}"
        )
    return path


def require_private(path: Path) -> None:
    """Refuse a secret-holding file that group or others can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
        )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (never a half-written secret)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def disk_state(path: Path, min_free_bytes: int = 0) -> str:
    """The filesystem holding ``path``, for the server's writes: ``ok``, ``low`` (free
    space under ``min_free_bytes``), ``full``, ``unwritable`` (read-only, or not writable
    by this process) or ``missing``. One ``statvfs``: cheap enough for every health check."""
    try:
        info = os.statvfs(path)
    except OSError:
        return "missing"
    if info.f_flag & os.ST_RDONLY or not os.access(path, os.W_OK):
        return "unwritable"
    free = info.f_bavail * info.f_frsize
    if free == 0:
        return "full"
    return "low" if free < min_free_bytes else DISK_OK
