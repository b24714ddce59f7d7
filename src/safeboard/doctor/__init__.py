"""``safeboard doctor``: the installation checked the way an auditor would, each finding
with its fix (docs/operations.md, "Doctor")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safeboard.doctor.database import database_checks
from safeboard.doctor.files import disk_checks, file_checks
from safeboard.doctor.findings import Finding, Severity, as_json
from safeboard.doctor.network import network_checks
from safeboard.errors import SafeboardError
from safeboard.settings import load_settings
from safeboard.storage import create_engine

__all__ = ["Finding", "Severity", "as_json", "examine"]


def examine(data_dir: Path, **overrides: Any) -> Iterator[Finding]:
    """Every finding for the data directory, in order: files, TLS and exposure, then the
    database. It changes nothing and makes nothing (no secrets, no schema)."""
    if not data_dir.is_dir():
        yield Finding(
            "files.data_dir",
            Severity.ERROR,
            f"{data_dir}: no such directory",
            "give the server's --data-dir (or SAFEBOARD_DATA_DIR)",
        )
        return
    yield from file_checks(data_dir)
    try:
        settings = load_settings(data_dir, **overrides)
    except (SafeboardError, ValueError) as exc:
        yield Finding(
            "settings",
            Severity.ERROR,
            f"the settings do not load: {exc}",
            "fix what the message names; `safeboard config show` checks again",
        )
        return
    yield from disk_checks(settings)
    yield from network_checks(settings)
    engine = create_engine(settings.database_url)
    try:
        yield from database_checks(engine)
    finally:
        engine.dispose()
