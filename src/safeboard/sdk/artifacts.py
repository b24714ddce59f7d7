"""``safeboard.download_artifact()``: an artifact's bytes to a local file, checked against
its SHA-256, resuming a download that was cut off (from its ``.part`` file)."""

from __future__ import annotations

import os
from pathlib import Path

from safeboard.client.credentials import resolve_server
from safeboard.client.downloads import download
from safeboard.errors import ConfigError

__all__ = ["download_artifact"]


def download_artifact(
    artifact_id: str,
    path: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    url: str | None = None,
    api_key: str | None = None,
) -> Path:
    """Download artifact ``artifact_id`` to ``path`` (a file, or a directory to put it in
    under its name; default: its name in the current directory) and return the file's
    path. An existing file is replaced only with ``overwrite=True`` (a symbolic link there is
    replaced itself, never written through). A ``.part`` file that this client did not make
    (a symbolic link, a hard link, another user's file) raises ``UnsafeDownloadPath`` and is
    left alone. The server is found as ``safeboard.init()`` finds it."""
    access = resolve_server(url, api_key)
    access.require_key(ConfigError)
    with access.client() as client:
        return download(client, artifact_id, None if path is None else Path(path),
                        overwrite=overwrite)  # fmt: skip
