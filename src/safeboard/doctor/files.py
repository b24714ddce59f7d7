"""The data directory as an auditor reads it: modes and owners, secrets, the discovery file
and lock, disk space."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

from safeboard.datadir import DISK_OK, LOCAL_SOCKET, PLAIN_SOCKET, disk_state
from safeboard.doctor.findings import Finding, Severity
from safeboard.importsock.protocol import IMPORT_SOCKET
from safeboard.server.lock import LOCK_FILE
from safeboard.settings import SECRETS_FILE, Settings
from safeboard.settings_sections import secret_weakness

__all__ = ["disk_checks", "file_checks"]

DISCOVERY = "discovery.json"
_PRIVATE_FILES = (SECRETS_FILE, DISCOVERY, "safeboard.db", "login-link")


def file_checks(data_dir: Path) -> Iterator[Finding]:
    """What needs no settings (they may not load: a weak secret, a bad file)."""
    yield from _directory(data_dir)
    yield from _private_files(data_dir)
    yield from _secrets(data_dir)
    yield from _discovery(data_dir)


def _directory(data_dir: Path) -> Iterator[Finding]:
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        yield Finding(
            "files.data_dir",
            Severity.ERROR,
            f"the data directory {data_dir} is open to group or others (mode {mode:o})",
            f"chmod 700 {data_dir}",
        )
    elif info.st_uid != os.geteuid():
        yield Finding(
            "files.data_dir",
            Severity.WARNING,
            f"the data directory {data_dir} belongs to uid {info.st_uid}, not to you",
            "run doctor (and the server) as the directory's owner",
        )
    else:
        yield Finding("files.data_dir", Severity.OK, f"{data_dir}: mode 700, yours")


def _private_files(data_dir: Path) -> Iterator[Finding]:
    paths = [data_dir / name for name in _PRIVATE_FILES]
    paths += sorted((data_dir / "tls").glob("*.key")) if (data_dir / "tls").is_dir() else []
    open_ones = []
    for path in paths:
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            open_ones.append(path)
    for path in open_ones:
        yield Finding(
            "files.modes",
            Severity.ERROR,
            f"{path} is readable or writable by group or others",
            f"chmod 600 {path}",
        )
    if not open_ones:
        yield Finding("files.modes", Severity.OK, "secret-holding files are 0600")


def _secrets(data_dir: Path) -> Iterator[Finding]:
    path = data_dir / SECRETS_FILE
    if not path.is_file():
        yield Finding(
            "secrets.file",
            Severity.INFO,
            f"no {SECRETS_FILE} yet: the server makes strong ones at its first start",
        )
        return
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        yield Finding(
            "secrets.file",
            Severity.ERROR,
            f"{path} cannot be read: {exc}",
            "restore it from a backup, or move it away to make new secrets "
            "(everyone signs in again)",
        )
        return
    flat = {
        **{k: v for k, v in values.items() if not isinstance(v, dict)},
        **{k: v for table in values.values() if isinstance(table, dict) for k, v in table.items()},
    }
    values = flat
    weak = [
        name
        for name, value in values.items()
        if isinstance(value, str) and value and secret_weakness(value)
    ]
    if weak:
        yield Finding(
            "secrets.strength",
            Severity.ERROR,
            f"{path}: weak secrets: {', '.join(sorted(weak))}",
            "safeboard secrets rotate (everyone signs in again)",
        )
    else:
        yield Finding("secrets.strength", Severity.OK, f"{len(values)} secrets, all strong")


def _discovery(data_dir: Path) -> Iterator[Finding]:
    """The discovery file (the local admin key, for this machine's CLI and SDK) and the
    lock's record of the server that holds the directory."""
    path = data_dir / DISCOVERY
    if not path.is_file():
        yield Finding("discovery", Severity.INFO, "no server has started on this directory yet")
        return
    try:
        found = json.loads(path.read_text())
        url = str(found["url"])
    except (OSError, ValueError, TypeError, KeyError):
        yield Finding(
            "discovery",
            Severity.WARNING,
            f"{path} is unreadable or damaged",
            "start the server: it writes the file again",
        )
        return
    pid = _lock_holder(data_dir)
    if pid is not None:
        yield Finding("discovery", Severity.OK, f"the server (pid {pid}) serves {url}")
        return
    leftovers = [
        name for name in (LOCAL_SOCKET, PLAIN_SOCKET, IMPORT_SOCKET) if (data_dir / name).exists()
    ]
    yield Finding(
        "discovery",
        Severity.INFO,
        f"no server is running on this directory (its discovery file names {url}"
        f"{'; its sockets remain' if leftovers else ''})",
        "start it: safeboard server (the next start clears what the last one left)",
    )


def _lock_holder(data_dir: Path) -> int | None:
    """The pid recorded in ``server.lock`` when that process is alive."""
    try:
        pid = int(json.loads((data_dir / LOCK_FILE).read_text())["pid"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return pid if pid > 0 and Path(f"/proc/{pid}").exists() else None


def disk_checks(settings: Settings) -> Iterator[Finding]:
    floor = settings.server.min_free_disk_bytes
    for label, path in (("data", settings.data_dir), ("artifacts", settings.artifact_dir)):
        if not path.exists():
            yield Finding(f"disk.{label}", Severity.INFO, f"{path}: made at the server's start")
            continue
        state = disk_state(path, floor)
        if state == DISK_OK:
            yield Finding(f"disk.{label}", Severity.OK, f"{path}: enough free space")
            continue
        severity = Severity.WARNING if state == "low" else Severity.ERROR
        yield Finding(
            f"disk.{label}",
            severity,
            f"the {label} disk ({path}) is {state}"
            + (
                f" (under server.min_free_disk_bytes, {floor:,} bytes, free)"
                if state == "low"
                else ""
            ),
            "free space or move the directory to a larger disk",
        )
