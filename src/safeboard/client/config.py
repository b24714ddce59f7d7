"""Where the client keeps what it trusts and holds: a private config directory (0700) with
files written 0600, keyed by the server's origin."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from platformdirs import user_config_dir

from safeboard.errors import ConfigError, InvalidUrl
from safeboard.hosts import NotAnOrigin, parse_origin

__all__ = ["CONFIG_DIR_ENV", "config_dir", "private_dir", "server_origin", "write_private"]

CONFIG_DIR_ENV = "SAFEBOARD_CONFIG_DIR"


def config_dir() -> Path:
    """``$SAFEBOARD_CONFIG_DIR``, else the user's config directory (``~/.config/safeboard``)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    return Path(env).expanduser() if env else Path(user_config_dir("safeboard", appauthor=False))


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


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
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
    port = origin.port or (443 if origin.scheme == "https" else 80)
    return f"{origin.scheme}://{origin.host}:{port}"
