"""Unpacking a task's code archive into its working directory, as safely as the archive
is untrusted: only regular files, directories and symbolic links that stay inside the
directory (tarfile's ``data`` filter: no absolute path, no ``..`` out, no link out, no
device, no set-uid bit), within a bound on the members and on the bytes unpacked (the
decompressed stream itself is counted, so a gzip bomb or a header claiming a huge member
stops at the bound instead of filling the disk or the memory). docs/agents.md, "Code".
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_MEMBERS",
    "MIN_UNPACKED_BYTES",
    "UNPACK_RATIO",
    "CodeRefused",
    "unpack",
    "unpack_limit",
]

MAX_MEMBERS = 100_000
MIN_UNPACKED_BYTES = 1 << 30  # 1 GiB: any archive may unpack to this much...
UNPACK_RATIO = 32  # ...or to this many times its own size, if more
_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "directory",
          tarfile.SYMTYPE: "link"}  # fmt: skip


class CodeRefused(Exception):
    """The archive is not what a task's code may be; the message says why."""


def unpack_limit(archive_size: int) -> int:
    return max(MIN_UNPACKED_BYTES, UNPACK_RATIO * archive_size)


class _Bounded:
    """The decompressed archive, refused past ``limit`` bytes: a read or a seek that
    would pass it fails before anything is read (tarfile reads a PAX or GNU long-name
    header whole, into memory, at the size the header claims)."""

    def __init__(self, raw: gzip.GzipFile, limit: int) -> None:
        self.raw = raw
        self.limit = limit

    def _refuse_past(self, position: int) -> None:
        if position > self.limit:
            raise CodeRefused(f"it unpacks to more than {self.limit} bytes")

    def read(self, size: int = -1) -> bytes:
        position = self.raw.tell()
        if size < 0:  # everything left, but no more than the bound allows
            data = self.raw.read(self.limit - position + 1)
            self._refuse_past(position + len(data))
            return data
        self._refuse_past(position + size)
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.raw.tell() + offset if whence == 1 else -1
        if target < 0:
            raise CodeRefused("the archive seeks from its end")
        self._refuse_past(target)
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()


def _check(member: tarfile.TarInfo, count: int, total: int, limit: int, most: int) -> None:
    if count > most:
        raise CodeRefused(f"more than {most} entries")
    kind = _KINDS.get(member.type)
    if kind is None:
        what = "a hard link" if member.type == tarfile.LNKTYPE else "a device or special file"
        raise CodeRefused(f"{member.name[:100]!r} is {what}: a code archive holds files, "
                          "directories and links")  # fmt: skip
    parts = member.name.split("/")
    if member.name.startswith("/") or ".." in parts:
        raise CodeRefused(f"{member.name[:100]!r} points out of the task's directory")
    if total > limit:
        raise CodeRefused(f"it unpacks to more than {limit} bytes")


def unpack(archive: Path, dest: Path, *, limit: int, max_members: int = MAX_MEMBERS) -> int:
    """Unpack the tar.gz ``archive`` into the directory ``dest``; the number of entries.
    CodeRefused for anything a task's code may not be (the message names it)."""
    data_filter: Any = getattr(tarfile, "data_filter", None)
    if data_filter is None:  # Python 3.11.4 and later have it
        raise CodeRefused("this agent's Python lacks tarfile's data filter: upgrade to 3.11.4+")
    count = total = 0
    try:
        with gzip.open(archive, "rb") as zipped:
            # The members' bytes, and room for their headers (a PAX header may hold a
            # long name: a few blocks each).
            stream = _Bounded(zipped, limit + (max_members + 2) * 4 * tarfile.BLOCKSIZE)
            with tarfile.open(fileobj=stream, mode="r:") as tar:  # type: ignore[call-overload]
                for member in tar:
                    count += 1
                    total += member.size
                    _check(member, count, total, limit, max_members)
                    tar.extract(member, dest, filter=data_filter)
    except CodeRefused:
        raise
    except tarfile.FilterError as exc:
        raise CodeRefused(str(exc)) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        # ValueError: a name no file system takes (a NUL byte), a malformed number...
        raise CodeRefused(f"not a readable tar.gz ({exc})") from None
    return count
