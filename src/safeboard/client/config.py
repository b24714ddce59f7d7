"""Where the client keeps what it trusts and holds: a private config directory (0700) with
files written 0600, keyed by the server's origin."""

from __future__ import annotations

import importlib
import itertools
import os
import random
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

from safeboard.errors import ConfigError, InvalidUrl
from safeboard.hosts import NotAnOrigin, parse_origin
from safeboard.userdirs import CONFIG_DIR_ENV, config_dir

__all__ = [
    "CONFIG_DIR_ENV", "WRITES", "config_dir", "private_dir", "server_origin", "write_private",
]  # fmt: skip


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check that an existing one is private."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is accessible by group or others (mode {mode:o}); chmod 700 it")
    return path


def _load_writes() -> ModuleType | None:
    try:
        return importlib.import_module("safeboard.client._writes")
    except ImportError:  # built without a C compiler (hatch_build.py said so)
        return None


WRITES: ModuleType | None = _load_writes()
"""The C writer (``_writes.c``), or None: read at each call (a test sets it to None)."""
Data = bytes | bytearray | memoryview | list[Any] | tuple[Any, ...]  # buffers: numpy arrays too
_TRIES = 100  # names to try for the new file, as tempfile.mkstemp
_names = itertools.count()
# Its own generator, as tempfile's: drawing from the random module's would move a seeded
# training script's own sequence, from a background thread.
_random = random.Random()  # noqa: S311  (a file name, not a secret)


def write_private(path: Path, data: Data) -> None:
    """Write ``data`` (a buffer, or a list or tuple of buffers, one after the other) to
    ``path`` with mode 0600, atomically: a new file beside it, written, synced and renamed
    over it. The C writer does all five system calls with the interpreter lock let go once
    (the SDK spools from a thread beside the training loop, which waits each time this
    thread takes the lock back: issue 13), and writes the buffers as they are; Python's
    own calls take the lock back after each, and join the buffers first."""
    for _ in range(_TRIES):
        name = f".{path.name}.{os.getpid()}.{next(_names)}.{_random.getrandbits(32):08x}.tmp"
        tmp = str(path.with_name(name))
        try:
            if WRITES is not None:
                WRITES.write_atomic(tmp, str(path), data, 0o600)
            else:
                _write_atomic(tmp, str(path), data)
        except FileExistsError as exc:
            if exc.filename != tmp:
                raise
            continue  # a name left by another process: another one
        return
    raise FileExistsError(f"no free name for a new file beside {path} in {_TRIES} tries")


def _write_atomic(tmp: str, path: str, data: Data) -> None:
    """What ``_writes.write_atomic`` does, in Python."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(b"".join(data) if isinstance(data, list | tuple) else data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        Path(tmp).rename(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def server_origin(url: str) -> str:
    """``scheme://host:port`` of a server address, the key under which trust and keys are kept."""
    try:
        origin = parse_origin(url)
    except NotAnOrigin as exc:
        shown = "the address" if exc.secret else repr(url[:200])
        raise InvalidUrl(
            f"{shown} {exc.problem}; give the server's address only, as https://host:port"
        ) from None
    return f"{origin.scheme}://{origin.host}:{origin.effective_port}"
