"""``<data_dir>/secrets.toml``: every key the server needs, generated at first start (S2)."""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path

import tomli_w

from safeboard.datadir import require_private, write_private
from safeboard.errors import ConfigError
from safeboard.settings import MAX_PREVIOUS_KEYS, SECRETS_FILE, SecureSettings

__all__ = ["ensure_secrets", "rotate_secrets", "secret_names"]

_ENV_PREFIX = "SAFEBOARD__SECURE__"


_TASK_KEY = "task_secrets_key"
# Earlier task secrets keys: never generated; a rotation keeps the replaced key here, so
# that tasks' secrets sealed under it stay readable (safeboard.jobs.secrets re-seals them).
_PREVIOUS_TASK_KEYS = "task_secrets_previous_keys"


def secret_names() -> list[str]:
    """The secrets generated at first start and replaced by a rotation."""
    return [name for name, field in SecureSettings.model_fields.items() if field.is_required()]


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits from the OS CSPRNG


def _read(path: Path) -> dict[str, str]:
    require_private(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc}); fix it, or delete it and run "
            "`safeboard secrets rotate`"
        ) from None
    section = data.get("secure", {})
    if not isinstance(section, dict) or set(data) - {"secure"}:
        raise ConfigError(f"{path} must hold only a [secure] table; fix or delete it")
    return {str(k): str(v) for k, v in section.items()}


def _from_env(name: str) -> bool:
    return bool(os.environ.get(_ENV_PREFIX + name.upper()))


def _write(path: Path, values: dict[str, str]) -> None:
    body = tomli_w.dumps({"secure": values}).encode()
    header = (
        b"# safeboard secrets: generated, keep private (0600). Rotate: safeboard secrets rotate\n"
    )
    write_private(path, header + body)


def ensure_secrets(data_dir: Path) -> list[str]:
    """Generate any missing secret not given by environment; return the names generated."""
    path = data_dir / SECRETS_FILE
    values = _read(path) if path.exists() else {}
    missing = [n for n in secret_names() if n not in values and not _from_env(n)]
    if missing:
        values.update({name: _new_secret() for name in missing})
        _write(path, values)
    return missing


def rotate_secrets(data_dir: Path) -> list[str]:
    """Replace every file-held secret with a new one; return the names replaced.

    Secrets given through the environment are left to whoever sets that environment.
    """
    path = data_dir / SECRETS_FILE
    values = _read(path) if path.exists() else {}
    rotated = [n for n in secret_names() if not _from_env(n)]
    old_task_key = values.get(_TASK_KEY)
    if _TASK_KEY in rotated and old_task_key:
        # The replaced key is kept (newest first, a bounded few): stored task secrets
        # sealed under it stay readable until the next start re-seals them.
        kept = [old_task_key, *values.get(_PREVIOUS_TASK_KEYS, "").split()]
        values[_PREVIOUS_TASK_KEYS] = " ".join(list(dict.fromkeys(kept))[:MAX_PREVIOUS_KEYS])
    values.update({name: _new_secret() for name in rotated})
    _write(path, values)
    return rotated
