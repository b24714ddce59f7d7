"""Where artifact bytes live: the storage interface, and the local filesystem behind it.

Keys are server-made ids (32 hex digits), never a client's path or name (S12); the local
store checks that again before it touches the disk, opens files with ``O_NOFOLLOW`` so a
symlink planted in storage is refused rather than followed, and keeps everything in a
0700 directory with 0600 files. Another backend (S3-compatible, say) implements
:class:`ArtifactStore` and nothing above it changes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from safeboard.errors import Conflict, DiskFull
from safeboard.ids import is_id
from safeboard.storage.faults import DISK_FULL_ERRNOS, DISK_FULL_RETRY_S

__all__ = ["ArtifactStore", "BlobReader", "BlobWriter", "LocalStore", "StoreError"]

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
READ_CHUNK = 1 << 20


class StoreError(Exception):
    """The stored bytes are not what the database says (missing, a symlink, ...)."""


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class BlobReader(Protocol):
    """Chunks of a byte range; ``close()`` frees what it holds, whether or not it was read
    (a response the client dropped before its body may never iterate it)."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class ArtifactStore(Protocol):
    def size(self, key: str) -> int:
        """Bytes stored under ``key`` so far (0 when nothing is)."""

    def append(self, key: str, offset: int) -> BlobWriter:
        """A writer from ``offset``, which must be the size stored; one writer at a time
        (Conflict otherwise). What was written is durable once the writer is closed."""

    def read(self, key: str, start: int, end: int) -> BlobReader:
        """Bytes ``start`` to ``end`` (exclusive), in chunks; opened now, so that a missing
        file fails before a response starts."""

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of everything stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing stored is fine. Conflict while a writer holds it."""


class _FileReader:
    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.position = start
        self.end = end

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.position >= self.end:
            self.close()
            raise StopIteration
        chunk = os.pread(self.fd, min(READ_CHUNK, self.end - self.position), self.position)
        if not chunk:
            self.close()
            raise StoreError("the stored file is shorter than its artifact")
        self.position += len(chunk)
        return chunk

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _FileWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFull(
                    "the server's artifact storage is full; what arrived so far is kept; "
                    f"retry after {DISK_FULL_RETRY_S} s",
                    retry_after=DISK_FULL_RETRY_S,
                ) from None
            raise

    def close(self) -> None:
        """Durable, then closed (which releases the lock). Also after an interrupted
        body: what arrived is kept for the resumed upload."""
        if self.fd < 0:
            return
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1


def _claim(fd: int, offset: int) -> None:
    """Lock the file for this writer and place it at ``offset``, the size stored."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict("another upload of this artifact is in progress") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise StoreError("not a regular file")
    if info.st_size != offset:
        raise Conflict(f"upload offset {offset} does not match the {info.st_size} bytes stored")
    os.lseek(fd, offset, os.SEEK_SET)


class LocalStore:
    """Files at ``<root>/<key[:2]>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.lstat()
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{root} must be a directory, not a link")
        self._real_root = root.resolve()

    def _path(self, key: str) -> Path:
        if not is_id(key):  # defence in depth: keys are always made by us
            raise StoreError("not a storage key")
        folder = self.root / key[:2]
        path = folder / key
        if folder.is_symlink():
            raise StoreError("a link where a storage folder should be")
        if path.resolve(strict=False).parent != self._real_root / key[:2]:
            raise StoreError("a storage path outside the store")
        return path

    def _open(self, key: str, flags: int) -> int:
        path = self._path(key)
        try:
            return os.open(path, flags | _OPEN_FLAGS, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError("a link where an artifact file should be") from None
            raise

    def size(self, key: str) -> int:
        try:
            fd = self._open(key, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def append(self, key: str, offset: int) -> BlobWriter:
        self._path(key).parent.mkdir(mode=0o700, exist_ok=True)
        fd = self._open(key, os.O_WRONLY | os.O_CREAT)
        try:
            _claim(fd, offset)
        except BaseException:
            os.close(fd)
            raise
        return _FileWriter(fd)

    def read(self, key: str, start: int, end: int) -> BlobReader:
        if start >= end:
            return _FileReader(-1, start, end)  # nothing to read: no file needed (empty ones)
        return _FileReader(self._open(key, os.O_RDONLY), start, end)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        reader = self.read(key, 0, self.size(key))
        try:
            for chunk in reader:
                digest.update(chunk)
        finally:
            reader.close()
        return digest.hexdigest()

    def delete(self, key: str) -> None:
        try:
            fd = self._open(key, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:  # the writer's lock: an upload in progress keeps its file
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict("an upload of this artifact is in progress; try again") from None
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
        finally:
            os.close(fd)
