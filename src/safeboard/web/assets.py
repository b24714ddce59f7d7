"""The dashboard's static files, served under a build id: ``/static/<build>/app.js``.

The build id is a hash of every static file, so a URL names one exact content and the
browser may keep it for a year without asking again; after an upgrade the pages (never
cached) name the new id and the browser fetches the new files. Modules import each other
by relative URLs, so they stay within the build their page named.

A request under another build id (a tab opened before an upgrade, or a replica not yet
upgraded) or under no id gets the current file, to be revalidated on every use; so does a
file that is not the one the server hashed at start (an upgrade installed in place before
the restart: another inode, size or modification time): its bytes may no longer be the
ones the build id names.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC_DIR", "Build", "VersionedStaticFiles", "asset", "build_id", "content_hash"]

STATIC_DIR = Path(__file__).with_name("static")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_BUILD_LENGTH = 16
_BUILD = re.compile(f"[0-9a-f]{{{_BUILD_LENGTH}}}")


FileIdentity = tuple[int, int, int]  # inode, size, modification time (ns)


def _identity(stat: os.stat_result) -> FileIdentity:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class Build:
    id: str
    files: dict[str, FileIdentity]  # real path -> the file that was hashed


def _hash_files(directory: Path) -> Build:
    digest = hashlib.sha256()
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        before = path.stat()
        name = path.relative_to(directory).as_posix().encode()
        data = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)))
        digest.update(data)
        if _identity(path.stat()) == _identity(before):  # (not one changing as it was read)
            files[os.path.realpath(path)] = _identity(before)
    return Build(digest.hexdigest()[:_BUILD_LENGTH], files)


def content_hash(directory: Path) -> str:
    """A hash of every file's path and bytes under ``directory``."""
    return _hash_files(directory).id


@functools.cache
def _build(directory: Path) -> Build:
    """A directory's build (once per process)."""
    return _hash_files(directory)


def build_id() -> str:
    """The installed static files' build id."""
    return _build(STATIC_DIR).id


def asset(name: str) -> str:
    """The URL of a static file, e.g. ``asset("app.js")``."""
    return f"/static/{build_id()}/{name}"


class VersionedStaticFiles(StaticFiles):
    """StaticFiles that ignores a leading build id and says how long a file may be kept:
    a year under the current build id, otherwise revalidate (the ETag makes that a 304)."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        super().__init__(directory=directory)
        self.hashed = _build(directory)  # at start, before any request
        self.build = self.hashed.id

    def _split(self, scope: Scope) -> tuple[str | None, str]:
        path = super().get_path(scope)
        head, sep, rest = path.partition(os.sep)
        return (head, rest) if sep and _BUILD.fullmatch(head) else (None, path)

    def get_path(self, scope: Scope) -> str:
        return self._split(scope)[1]

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        hashed = self.hashed.files.get(os.path.realpath(full_path))
        current = self._split(scope)[0] == self.build and hashed == _identity(stat_result)
        response.headers["cache-control"] = IMMUTABLE if current else REVALIDATE
        return response
