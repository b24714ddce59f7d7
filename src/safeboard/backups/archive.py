"""``safeboard backup DEST`` and ``safeboard restore SRC``: one tar file holding a server's
whole state, taken online, checked on the way back (docs/operations.md, "Backup and
restore").

Members, in order: ``database/safeboard.db`` (SQLite) or ``database/safeboard.pgdump``
(PostgreSQL), then ``artifacts/...`` (every file of the artifact store: artifacts and
tasks' code), then the secrets (``secrets.toml``, ``tls/...``: the CA and the server's
certificate) unless excluded, ``safeboard.toml`` when there is one, and last
``manifest.json``: the format, the database's kind, whether secrets are inside, and each
member's SHA-256 and size.

The database is copied first, then the files: every artifact the copied database knows
as stored was complete on disk before its row said so, and stored files never change
(an upload in progress is copied as far as it got, as its row records). Files that
arrive after the database copy are carried too, unknown to it, and harmless.

Restore writes into an empty data directory only, checks every member's SHA-256 as it
writes it (anything else, or a path outside the directory, and nothing is left), and
checks the audit log's hash chain of the restored database.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import tomli_w

from safeboard import __version__
from safeboard.audit import service as audit
from safeboard.backups import database
from safeboard.datadir import ensure_data_dir, write_private
from safeboard.errors import ConfigError
from safeboard.secret_store import ensure_secrets
from safeboard.settings import SECRETS_FILE, Settings, load_settings
from safeboard.storage import open_database

__all__ = ["BackupReport", "RestoreReport", "backup", "restore"]

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/safeboard.db"
PG_MEMBER = "database/safeboard.pgdump"
SECRETS_WARNING = (
    "This archive holds the server's secrets (session and signing keys, the task secrets "
    "key, the CA's private key): keep it as safe as the server itself."
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupReport:
    path: Path
    database: str
    files: int
    bytes: int
    secrets: bool


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    database: str
    files: int
    audit_entries: int
    notes: list[str]


def backup(
    settings: Settings, dest: Path, *, secrets: bool = True, pg_dump: Path | None = None
) -> BackupReport:
    """Write the archive to ``dest`` (a new file, 0600)."""
    data_dir = settings.data_dir
    try:
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{dest} exists: give a new file name") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {dest} ({exc.strerror or exc})") from None
    entries: dict[str, dict[str, Any]] = {}
    try:
        with (
            os.fdopen(out, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
            tempfile.TemporaryDirectory(dir=dest.parent, prefix=".safeboard-backup-") as tmp,
        ):
            copy = Path(tmp) / "database"
            kind = database.dump(settings.database_url, copy, pg_dump)
            _add(tar, entries, SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER, copy)
            copy.unlink()
            for path, name in _tree(settings.artifact_dir, "artifacts"):
                _add(tar, entries, name, path)
            if secrets:
                for path, name in _secret_files(data_dir):
                    _add(tar, entries, name, path)
            config = data_dir / "safeboard.toml"
            if config.is_file():
                _add(tar, entries, "safeboard.toml", config)
            manifest = {
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(),
                "safeboard": __version__,
                "database": kind,
                "secrets": secrets,
                "warning": SECRETS_WARNING if secrets else "No secrets inside.",
                "files": entries,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)  # never a half archive that looks whole
        raise
    files = sum(1 for name in entries if name.startswith("artifacts/"))
    size = sum(e["size"] for e in entries.values())
    return BackupReport(dest, kind, files, size, secrets)


def _tree(root: Path, prefix: str) -> Iterator[tuple[Path, str]]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path, f"{prefix}/{path.relative_to(root).as_posix()}"


def _secret_files(data_dir: Path) -> Iterator[tuple[Path, str]]:
    secrets = data_dir / SECRETS_FILE
    if secrets.is_file():
        yield secrets, SECRETS_FILE
    yield from _tree(data_dir / "tls", "tls")


def _add(tar: tarfile.TarFile, entries: dict[str, dict[str, Any]], name: str, path: Path) -> None:
    """Add ``path`` as far as it is now (a file still growing: its first bytes, which no
    longer change), hashing what goes in."""
    with path.open("rb") as source:
        size = os.fstat(source.fileno()).st_size
        digest = hashlib.sha256()
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(path.stat().st_mtime)
        tar.addfile(info, _Hashing(source, size, digest))
    entries[name] = {"sha256": digest.hexdigest(), "size": size}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


class _Hashing(io.RawIOBase):
    """Reads at most ``size`` bytes of ``source``, hashing them."""

    def __init__(self, source: IO[bytes], size: int, digest: Any) -> None:
        self.source, self.left, self.digest = source, size, digest

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.source.read(n)
        self.left -= len(data)
        self.digest.update(data)
        return data


def restore(
    source: Path,
    data_dir: Path,
    *,
    database_url: str | None = None,
    pg_restore: Path | None = None,
) -> RestoreReport:
    """Restore the archive at ``source`` into ``data_dir`` (missing or empty)."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} is not empty: restore into a new or empty directory")
    made = not data_dir.exists()
    try:
        with _opened(source) as tar:
            manifest = _manifest(tar, source)
            ensure_data_dir(data_dir)
            files = _extract(tar, manifest["files"], data_dir, source)
        return _finish(manifest, data_dir, files, database_url, pg_restore)
    except BaseException:
        _empty(data_dir, remove=made)
        raise


@contextmanager
def _opened(source: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(source, mode="r:")  # noqa: SIM115  (closed below)
    except (OSError, tarfile.TarError) as exc:
        raise ConfigError(f"{source}: not a safeboard backup ({exc})") from None
    with tar:
        yield tar


def _manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member)
        manifest: dict[str, Any] = json.loads(handle.read() if handle else b"")
    except (KeyError, ValueError, tarfile.TarError):
        raise ConfigError(f"{source}: no readable {MANIFEST}: not a safeboard backup") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise ConfigError(f"{source}: a backup format this version cannot read")
    return manifest


def _extract(
    tar: tarfile.TarFile, expected: dict[str, dict[str, Any]], data_dir: Path, source: Path
) -> int:
    seen = set()
    for member in tar:
        if member.name == MANIFEST:
            continue
        entry = expected.get(member.name)
        if entry is None or not member.isfile() or not _safe(member.name):
            raise ConfigError(f"{source}: unexpected member {member.name!r}: refusing it")
        target = data_dir / member.name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        handle = tar.extractfile(member)
        assert handle is not None  # a regular file  # noqa: S101
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != entry["sha256"] or member.size != entry["size"]:
            raise ConfigError(f"{source}: {member.name} does not match its checksum: damaged")
        seen.add(member.name)
    if missing := sorted(set(expected) - seen):
        raise ConfigError(f"{source}: {len(missing)} files missing, first {missing[0]}")
    return len(seen)


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and path.parts[0] in (
        "database", "artifacts", "tls", SECRETS_FILE, "safeboard.toml"
    )  # fmt: skip


def _finish(
    manifest: dict[str, Any],
    data_dir: Path,
    files: int,
    database_url: str | None,
    pg_restore: Path | None,
) -> RestoreReport:
    notes = []
    if manifest["database"] == "postgresql":
        if not database_url:
            raise ConfigError("this backup holds a PostgreSQL database: give --database-url "
                              "of an empty database to restore it into")  # fmt: skip
        dump_file = data_dir / PG_MEMBER
        database.restore_postgres(database_url, dump_file, pg_restore)
        shutil.rmtree(dump_file.parent)
    else:
        if database_url:
            raise ConfigError("this backup holds a SQLite database: leave out --database-url")
        (data_dir / SQLITE_MEMBER).rename(data_dir / "safeboard.db")
        (data_dir / "database").rmdir()
    notes.extend(_settle_paths(data_dir, database_url))
    if not manifest["secrets"]:
        ensure_secrets(data_dir)
        notes.append("new secrets were made: everyone signs in again, tasks' sealed secrets "
                     "cannot be read, and clients trust the new CA again")  # fmt: skip
    overrides = {"database": {"url": database_url}} if database_url else {}
    engine = open_database(load_settings(data_dir, **overrides).database_url)
    try:
        report = audit.verify(engine)
    finally:
        engine.dispose()
    if not report.ok:
        raise ConfigError(f"the restored audit log fails its check: {report.summary}")
    return RestoreReport(data_dir, manifest["database"], files, report.checked, notes)


def _settle_paths(data_dir: Path, database_url: str | None) -> list[str]:
    """The restored ``safeboard.toml`` names what was restored: the PostgreSQL database
    given, else the SQLite file and the artifact files where restore put them (in the
    data directory: a path the old settings named elsewhere is dropped, with a note)."""
    config = data_dir / "safeboard.toml"
    if not config.is_file() and database_url is None:
        return []
    values: dict[str, Any] = tomllib.loads(config.read_text()) if config.is_file() else {}
    notes = []
    if database_url is not None:
        values.setdefault("database", {})["url"] = database_url
    elif values.get("database", {}).pop("url", None) is not None:
        notes.append("safeboard.toml's database.url was dropped: the database is now "
                     "safeboard.db in the data directory")  # fmt: skip
    if values.get("artifacts", {}).pop("path", None) is not None:
        notes.append("safeboard.toml's artifacts.path was dropped: the artifact files are "
                     "now in the data directory's artifacts/")  # fmt: skip
    write_private(config, tomli_w.dumps(values).encode())
    return notes


def _empty(data_dir: Path, *, remove: bool) -> None:
    if not data_dir.exists():
        return
    for child in data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    if remove:
        data_dir.rmdir()
