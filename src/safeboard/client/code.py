"""A task's code, packed on the client: a deterministic tar.gz of a directory (sorted
names; mtimes, owners and modes normalised, so the same tree always gives the same
SHA-256), skipping what its ``.gitignore`` and ``.safeboardignore`` files ignore
(nested ones too, negations included, with git's rules: ``pathspec``) and ``.git/``.
Symbolic links are stored as links when they point inside the tree, skipped otherwise;
none is ever followed. Shared by ``safeboard task submit`` and ``safeboard.submit``.

``upload_code`` asks the server for its limit first (and so whether the project can be
written at all), packs the directory within that limit, then uploads the archive unless
the project holds it already (the same code, submitted by a sweep of 200 tasks, is sent
once). Over the limit: ``CodeTooLarge``, naming the biggest files and how to leave them
out. docs/agents.md, "Code".
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import heapq
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pathspec

from safeboard.client import paths
from safeboard.client.job_models import CodeStatus
from safeboard.errors import ConfigError, PayloadTooLarge
from safeboard.sizes import human_size

if TYPE_CHECKING:
    from safeboard.client.typed import Client

__all__ = [
    "IGNORE_FILES",
    "CodeArchive",
    "CodeTooLarge",
    "PackedFile",
    "UploadedCode",
    "code_files",
    "code_status",
    "fetch_task_code",
    "pack",
    "send_archive",
    "upload_code",
]

IGNORE_FILES = (".gitignore", ".safeboardignore")  # read in this order, per directory
NEVER = frozenset({".git"})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_LARGEST = 5
_READ = 1 << 20
_TRANSFER_TIMEOUT = 600.0


class CodeTooLarge(PayloadTooLarge):
    """The packed directory is over the server's limit (``jobs.max_code_bytes``)."""


@dataclass(frozen=True)
class PackedFile:
    path: str  # relative, with / separators
    size: int
    link: str | None = None  # a symbolic link's target (inside the tree)


@dataclass(frozen=True)
class CodeArchive:
    """A packed directory: the archive (a temporary file: ``discard()`` it), its SHA-256
    and size, what it holds, and the links left out (they pointed out of the tree)."""

    path: Path
    sha256: str
    size: int
    files: int
    file_bytes: int
    skipped_links: tuple[str, ...]

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class UploadedCode:
    sha256: str
    size: int
    files: int
    sent: bool  # False: the project held this archive already
    skipped_links: tuple[str, ...]


_Rules = list[tuple[str, pathspec.GitIgnoreSpec]]


def _rules_in(directory: Path, prefix: str) -> _Rules:
    rules: _Rules = []
    for name in IGNORE_FILES:
        path = directory / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(path.lstat().st_mode):  # a link named .gitignore is not read
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                rules.append((prefix, pathspec.GitIgnoreSpec.from_lines(lines)))
    return rules


def _ignored(rules: _Rules, relative: str) -> bool:
    """Git's answer: the last rule that matches decides, the deepest file last."""
    decision = False
    for base, spec in rules:
        if relative.startswith(base):
            found = spec.check_file(relative[len(base) :]).include
            if found is not None:
                decision = found
    return decision


def _inside(relative: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    return joined != ".." and not joined.startswith("../") and joined != "."


def code_files(root: Path, skipped: list[str] | None = None) -> Iterator[PackedFile]:
    """The files (and inner links) of ``root`` that go into its archive, sorted by path;
    links pointing out of the tree are added to ``skipped``."""
    yield from _walk(root, "", _rules_in(root, ""), skipped if skipped is not None else [])


def _walk(directory: Path, prefix: str, rules: _Rules, skipped: list[str]) -> Iterator[PackedFile]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"cannot read {directory}: {exc.strerror}") from None
    for entry in entries:
        if entry.name in NEVER:
            continue
        relative = prefix + entry.name
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            if not _ignored(rules, relative + "/"):
                inner = directory / entry.name
                yield from _walk(inner, relative + "/", rules + _rules_in(inner, relative + "/"),
                                 skipped)  # fmt: skip
        elif _ignored(rules, relative):
            continue
        elif stat.S_ISLNK(info.st_mode):
            target = str(Path(entry.path).readlink())
            if _inside(relative, target):
                yield PackedFile(relative, 0, link=target)
            else:
                skipped.append(relative)
        elif stat.S_ISREG(info.st_mode):
            yield PackedFile(relative, info.st_size)
        # sockets, FIFOs, devices: never code


def _member(packed: PackedFile, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(packed.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if packed.link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = packed.link
        info.mode = 0o777
    else:
        info.size = packed.size
        info.mode = 0o755 if mode & 0o111 else 0o644
    return info


def pack(root: Path | str, *, limit: int, workdir: Path | None = None) -> CodeArchive:
    """Pack ``root`` into a temporary tar.gz; CodeTooLarge once the archive passes
    ``limit`` bytes (the message names the biggest files)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"{base}: not a directory (the code to upload)")
    fd, name = tempfile.mkstemp(prefix="safeboard-code-", suffix=".tar.gz", dir=workdir)
    path = Path(name)
    try:
        written = _write(base, fd, limit)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    size = path.stat().st_size
    if written.over or size > limit:
        path.unlink(missing_ok=True)
        raise CodeTooLarge(too_large(base.resolve(), limit, written))
    return CodeArchive(path, _sha256(path), size, written.files, written.total,
                       tuple(written.skipped))  # fmt: skip


@dataclass
class _Written:
    files: int = 0
    total: int = 0
    over: bool = False  # the archive passed the limit: the rest is only counted
    skipped: list[str] = field(default_factory=list)
    largest: list[tuple[int, str]] = field(default_factory=list)  # a heap of the biggest


def _write(base: Path, fd: int, limit: int) -> _Written:
    written = _Written()
    with (
        os.fdopen(fd, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for packed in code_files(base, written.skipped):
            written.files += 1
            written.total += packed.size
            heapq.heappush(written.largest, (packed.size, packed.path))
            if len(written.largest) > _LARGEST:
                heapq.heappop(written.largest)
            if not written.over:
                _add(tar, base, packed)
                written.over = raw.tell() > limit
    return written


def _add(tar: tarfile.TarFile, base: Path, packed: PackedFile) -> None:
    source = base / packed.path
    if packed.link is not None:
        tar.addfile(_member(packed, 0o777))
        return
    try:
        handle = source.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    with handle:
        info = os.fstat(handle.fileno())
        packed = PackedFile(packed.path, info.st_size)  # as it is now, if it changed
        tar.addfile(_member(packed, info.st_mode), handle)


def too_large(base: Path, limit: int, written: _Written) -> str:
    biggest = ", ".join(
        f"{path} ({human_size(size)})" for size, path in sorted(written.largest, reverse=True)
    )
    return (
        f"the code in {base} ({written.files} files, {human_size(written.total)}) packs to "
        "more than the "
        f"server's limit of {human_size(limit)}; the biggest files: {biggest}. Leave them "
        "out with a .gitignore or .safeboardignore line each (same syntax), pack less with "
        "--code DIR, or run a command of the agent's machine with --no-code"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_READ):
            yield chunk


def code_status(client: Client, project: str, sha256: str) -> CodeStatus:
    """Whether ``project`` holds the code archive ``sha256``, and the server's limit."""
    return CodeStatus.from_json(client.send("GET", paths.project_code(project, sha256)).json())


def send_archive(client: Client, project: str, archive: CodeArchive) -> CodeStatus:
    """Upload a packed archive, streamed from its file. Sent once (a stream is not
    read twice); sending it again is harmless."""
    headers = {"Content-Type": "application/gzip", "Content-Length": str(archive.size)}
    response = client.send("PUT", paths.project_code(project, archive.sha256),
                           content=_chunks(archive.path), headers=headers, idempotent=False,
                           timeout=_TRANSFER_TIMEOUT)  # fmt: skip
    return CodeStatus.from_json(response.json())


def fetch_task_code(client: Client, task_id: int, attempt: int, dest: IO[bytes], limit: int) -> str:
    """Write the code archive of an attempt leased to this agent into ``dest`` (at most
    ``limit`` bytes: PayloadTooLarge past it) and return its SHA-256, computed here."""
    digest = hashlib.sha256()
    written = 0
    path = paths.agent_task_code(task_id, attempt)
    with client.api.stream("GET", path, timeout=_TRANSFER_TIMEOUT) as response:
        for chunk in response.iter_bytes():
            written += len(chunk)
            if written > limit:
                raise PayloadTooLarge(f"the code archive is over {human_size(limit)}")
            digest.update(chunk)
            dest.write(chunk)
    return digest.hexdigest()


def upload_code(client: Client, project: str, directory: Path | str) -> UploadedCode:
    """Pack ``directory`` within the server's limit and upload it to ``project`` unless
    it holds the archive already; the digest to submit with."""
    limit = code_status(client, project, EMPTY_SHA256).max_bytes
    archive = pack(directory, limit=limit)
    try:
        held = code_status(client, project, archive.sha256)
        if not held.uploaded:
            try:
                send_archive(client, project, archive)
            except PayloadTooLarge as exc:  # the limit changed meanwhile
                raise CodeTooLarge(exc.message) from None
        return UploadedCode(archive.sha256, archive.size, archive.files, not held.uploaded,
                            archive.skipped_links)  # fmt: skip
    finally:
        archive.discard()
