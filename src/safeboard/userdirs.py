"""Where a user's safeboard files are: the local server's data directory, the client's
configuration (stored logins) and the SDK's spool. Standard library and platformdirs only:
``safeboard import tensorboard`` reads them before it decides to load the HTTP client (P7).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir, user_state_dir

from safeboard.errors import ConfigError

__all__ = [
    "API_KEY_ENV", "CONFIG_DIR_ENV", "DATA_DIR_ENV", "SPOOL_ENV", "URL_ENV", "config_dir",
    "default_data_dir", "read_private_json", "spool_root",
]  # fmt: skip

URL_ENV, API_KEY_ENV = "SAFEBOARD_URL", "SAFEBOARD_API_KEY"
DATA_DIR_ENV = "SAFEBOARD_DATA_DIR"
CONFIG_DIR_ENV = "SAFEBOARD_CONFIG_DIR"
SPOOL_ENV = "SAFEBOARD_SPOOL_DIR"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The local server's data directory: ``$SAFEBOARD_DATA_DIR`` or the XDG data directory."""
    env = (os.environ if environ is None else environ).get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path(user_data_dir("safeboard", appauthor=False))


def config_dir() -> Path:
    """``$SAFEBOARD_CONFIG_DIR``, else the user's config directory (``~/.config/safeboard``)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    return Path(env).expanduser() if env else Path(user_config_dir("safeboard", appauthor=False))


def spool_root() -> Path:
    env = os.environ.get(SPOOL_ENV)
    return Path(env) if env else Path(user_state_dir("safeboard", appauthor=False)) / "spool"


def read_private_json(path: Path) -> dict[str, object] | None:
    """A secret-holding JSON file, or None when absent; refused if others may read it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise ConfigError(f"cannot read {path}: delete it, or fix its JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"cannot read {path}: not a JSON object")
    return data
