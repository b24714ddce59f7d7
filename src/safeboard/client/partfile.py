"""The files a download writes: its ``<name>.part`` and the final name, in one directory,
never through a link and never into a file this client did not make (issue 10, item 8).

Everything goes through descriptors. The directory is opened once and every name is used
relative to it (``dir_fd``). The partial file is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (mode 0600), so whatever was planted at its name (a symbolic link to
``~/.bashrc``, a hard link, a FIFO) is never written through; a partial file left by an
earlier run is reopened with ``O_NOFOLLOW`` and resumed only when ``fstat`` of that very
descriptor shows a regular file of this user, with one link and mode 0600 or less. Bytes
are written and hashed through the same descriptor. Before the file is moved into place its
name must still lead to that descriptor's inode; after the move (a hard link, or a rename,
neither of which follows a link) the final name must too, or the move is undone. Anything
else stops with ``UnsafeDownloadPath``, which names the path and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from safeboard.errors import ConfigError, Conflict

__all__ = ["Folder", "PartFile", "UnsafeDownloadPath"]

_READ_SIZE = 1024 * 1024
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDownloadPath(ConfigError):
    """A file in a download's way is not one this client made (a symbolic link, another
    user's file, a hard link, not a regular file). Nothing was written to it."""


def _unsafe(path: Path, why: str) -> UnsafeDownloadPath:
    return UnsafeDownloadPath(
        f"{path} {why}; a download never writes through it, and nothing was written to it. "
        f"Check what it is, remove it (rm {shlex.quote(str(path))}) and download again"
    )


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


class Folder:
    """The destination directory, held open so that every name is looked up in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such directory") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open the directory ({exc.strerror})") from None

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry ``name`` itself (a link is not followed), or None when absent."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def check_free(self, name: str, *, overwrite: bool) -> None:
        """Refuse a final name that is taken, unless ``overwrite``; a link there counts as
        taken (``overwrite`` replaces the link itself, never what it points to)."""
        info = self.lstat(name)
        if info is None:
            return
        target = self.path / name
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{target} is a directory: choose a file name")
        if not overwrite:
            what = " (a symbolic link)" if stat.S_ISLNK(info.st_mode) else ""
            raise Conflict(f"{target} exists{what}: choose another path, or overwrite it (--force)")


class PartFile:
    """One download's partial file, open for reading and writing by descriptor."""

    def __init__(self, folder: Folder, name: str, fd: int) -> None:
        self.folder, self.name, self.fd = folder, name, fd
        self.path = folder.path / name
        self._identity = _identity(os.fstat(fd))

    @classmethod
    def reopen(cls, folder: Folder, name: str) -> PartFile | None:
        """The partial file an earlier run of this client left, or None when there is none.
        Raises ``UnsafeDownloadPath`` for anything this client would not have made."""
        path = folder.path / name
        flags = os.O_RDWR | os.O_NONBLOCK | _NO_FOLLOW  # O_NONBLOCK: a FIFO does not hang
        try:
            fd = os.open(name, flags, dir_fd=folder.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _unsafe(path, "is a symbolic link") from None
            raise _unsafe(path, f"cannot be opened ({exc.strerror})") from None
        try:
            _check_own(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return cls(folder, name, fd)

    @classmethod
    def create(cls, folder: Folder, name: str) -> PartFile:
        """A new, empty partial file; fails rather than open anything already there."""
        path = folder.path / name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NO_FOLLOW
        try:
            fd = os.open(name, flags, 0o600, dir_fd=folder.fd)
        except FileExistsError:
            raise _unsafe(path, "appeared while the download was starting it") from None
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
        return cls(folder, name, fd)

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def write_from(self, offset: int) -> Callable[[bytes], None]:
        """A writer of consecutive blocks starting at byte ``offset``."""
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)

        def write(block: bytes) -> None:
            view = memoryview(block)
            while view:
                view = view[os.write(self.fd, view) :]

        return write

    def sync(self) -> None:
        os.fsync(self.fd)

    def sha256(self, progress: Callable[[int, int], None]) -> str:
        """Hex SHA-256 of what the descriptor holds (not of whatever the name leads to)."""
        digest, done, total = hashlib.sha256(), 0, self.size
        while block := os.pread(self.fd, _READ_SIZE, done):
            digest.update(block)
            done += len(block)
            progress(done, total)
        return digest.hexdigest()

    def _still_named(self, name: str) -> bool:
        info = self.folder.lstat(name)
        return info is not None and _identity(info) == self._identity

    def discard(self) -> None:
        """Remove the partial file (its name, when it still leads to it) and close it."""
        if self._still_named(self.name):
            os.unlink(self.name, dir_fd=self.folder.fd)
        os.close(self.fd)
        self.fd = -1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def place(self, final: str, *, overwrite: bool) -> None:
        """Give the checked file its final name in one step, without following a link;
        without ``overwrite``, fail rather than replace a name taken meanwhile."""
        if not self._still_named(self.name):
            raise _unsafe(self.path, "was replaced while the download was writing it")
        fd = self.folder.fd
        try:
            if overwrite:
                os.replace(self.name, final, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                self._link(final)
        except OSError as exc:
            target = self.folder.path / final
            raise ConfigError(f"cannot move {self.path} to {target}: {exc.strerror}") from None
        if not self._still_named(final):
            # The partial file's name was swapped between the check and the move: take
            # away what this call put there.
            os.unlink(final, dir_fd=fd)
            raise _unsafe(self.folder.path / final, "was replaced while it was moved into place")

    def _link(self, final: str) -> None:
        fd = self.folder.fd
        try:
            os.link(self.name, final, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            target = self.folder.path / final
            raise Conflict(f"{target} exists: choose another path, or overwrite it") from None
        except OSError:  # a file system without hard links
            self.folder.check_free(final, overwrite=False)
            os.replace(self.name, final, src_dir_fd=fd, dst_dir_fd=fd)
            return
        if self._still_named(self.name):
            os.unlink(self.name, dir_fd=fd)


def _check_own(info: os.stat_result, path: Path) -> None:
    """A partial file this client made: regular, this user's, one link, private."""
    if not stat.S_ISREG(info.st_mode):
        raise _unsafe(path, "is not a regular file")
    if info.st_uid != os.geteuid():
        raise _unsafe(path, f"belongs to another user (uid {info.st_uid})")
    if info.st_nlink != 1:
        raise _unsafe(path, f"has {info.st_nlink} hard links (the same file under other names)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise _unsafe(path, f"is open to group or others (mode {mode:o}), unlike a partial file")
